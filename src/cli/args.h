// A small command-line parser: "--name value", "--name=value" and boolean "--flag".
#pragma once
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace hs::cli {

class Args {
 public:
  // `flags` take no value; every other --option takes one. Unknown options are errors.
  Args(int argc, char** argv, int first, const std::set<std::string>& options, const std::set<std::string>& flags);

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string str(const std::string& name, const std::string& fallback = "") const;
  std::string required(const std::string& name) const;
  long long integer(const std::string& name, long long fallback) const;
  double number(const std::string& name, double fallback) const;
  std::optional<double> opt_number(const std::string& name) const;
  // A byte count: plain digits or with a K, M, G or T suffix (powers of 1024), e.g. "4G".
  long long bytes(const std::string& name, long long fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Parses "4G", "512M", "1048576" (powers of 1024); throws std::invalid_argument.
long long parse_bytes(const std::string& text);
// Strict parses of a flag's value (the whole text must be the number); std::invalid_argument
// messages name --flag.
long long parse_integer(const std::string& flag, const std::string& text);
double parse_number(const std::string& flag, const std::string& text);  // finite only

}  // namespace hs::cli
