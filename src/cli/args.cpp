#include "cli/args.h"

#include <cmath>

namespace hs::cli {

Args::Args(int argc, char** argv, int first, const std::set<std::string>& options, const std::set<std::string>& flags) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (flags.count(name)) {
      if (inline_value) throw std::invalid_argument("--" + name + " takes no value");
      values_[name] = "1";
    } else if (options.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) throw std::invalid_argument("--" + name + " needs a value");
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      throw std::invalid_argument("unknown option --" + name);
    }
  }
}

std::string Args::str(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::required(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw std::invalid_argument("--" + name + " is required");
  return it->second;
}

long long parse_integer(const std::string& flag, const std::string& text) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size())
    throw std::invalid_argument("--" + flag + " expects an integer, got '" + text + "'");
  return v;
}

double parse_number(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || !std::isfinite(v))
    throw std::invalid_argument("--" + flag + " expects a number, got '" + text + "'");
  return v;
}

long long Args::integer(const std::string& name, long long fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : parse_integer(name, it->second);
}

std::optional<double> Args::opt_number(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return parse_number(name, it->second);
}

long long parse_bytes(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || v < 0) throw std::invalid_argument("'" + text + "' is not a byte count (e.g. 512M, 4G)");
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  double mult = 1;
  if (unit == "K" || unit == "k") mult = 1024.0;
  else if (unit == "M" || unit == "m") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty()) throw std::invalid_argument("'" + text + "' is not a byte count (e.g. 512M, 4G)");
  return static_cast<long long>(v * mult);
}

long long Args::bytes(const std::string& name, long long fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  try {
    return parse_bytes(it->second);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--" + name + ": " + e.what());
  }
}

double Args::number(const std::string& name, double fallback) const { return opt_number(name).value_or(fallback); }

}  // namespace hs::cli
