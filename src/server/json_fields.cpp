#include "server/json_fields.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace hs::server {

namespace {

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

const char* json_type_phrase(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::number_float: return "a fractional number";
    default: return "a number";
  }
}

std::optional<int64_t> as_integer(const nlohmann::json& j) {
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (j.is_number_integer()) return j.get<int64_t>();
  if (j.is_number_float()) {
    const double d = j.get<double>();
    // 2^63 is the first double that no longer fits.
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

const nlohmann::json* JsonFields::get(const char* key) const {
  auto it = o_.find(key);
  if (it == o_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<bool> JsonFields::boolean(const char* key) const {
  const nlohmann::json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean())
    throw ApiError(400, std::string(key) + " must be a boolean, not " + json_type_phrase(*v), key, "invalid_type");
  return v->get<bool>();
}

std::optional<int64_t> JsonFields::integer(const char* key) const {
  const nlohmann::json* v = get(key);
  if (!v) return std::nullopt;
  const std::optional<int64_t> i = as_integer(*v);
  if (!i) throw ApiError(400, std::string(key) + " must be an integer, not " + json_type_phrase(*v), key, "invalid_type");
  return i;
}

std::optional<int64_t> JsonFields::integer_in(const char* key, int64_t lo, int64_t hi) const {
  const std::optional<int64_t> i = integer(key);
  if (i && (*i < lo || *i > hi))
    throw invalid_param(key, std::string(key) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                 "], got " + std::to_string(*i));
  return i;
}

std::optional<double> JsonFields::number(const char* key) const {
  const nlohmann::json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_number())
    throw ApiError(400, std::string(key) + " must be a number, not " + json_type_phrase(*v), key, "invalid_type");
  return v->get<double>();
}

std::optional<double> JsonFields::number_in(const char* key, double lo, double hi, bool open_lo) const {
  const std::optional<double> d = number(key);
  if (d && !(std::isfinite(*d) && (open_lo ? *d > lo : *d >= lo) && *d <= hi))
    throw invalid_param(key, std::string(key) + " must be in " + (open_lo ? "(" : "[") + format_number(lo) + ", " +
                                 format_number(hi) + "], got " + format_number(*d));
  return d;
}

std::optional<std::string> JsonFields::string(const char* key) const {
  const nlohmann::json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_string())
    throw ApiError(400, std::string(key) + " must be a string, not " + json_type_phrase(*v), key, "invalid_type");
  return v->get<std::string>();
}

}  // namespace hs::server
