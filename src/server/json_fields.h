// Typed, checked reads of a JSON request object's fields. Every accessor treats a missing field
// and null alike (not given) and throws ApiError 400 naming the field when the type or range is
// wrong, so request parsing reads as a list of rules.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "server/errors.h"

namespace hs::server {

class JsonFields {
 public:
  explicit JsonFields(const nlohmann::json& object) : o_(object) {}

  // The field, or nullptr when it is missing or null.
  const nlohmann::json* get(const char* key) const;
  bool has(const char* key) const { return get(key) != nullptr; }

  std::optional<bool> boolean(const char* key) const;
  // Integers; a float with an integral value (3.0) counts as one.
  std::optional<int64_t> integer(const char* key) const;
  std::optional<int64_t> integer_in(const char* key, int64_t lo, int64_t hi) const;
  std::optional<double> number(const char* key) const;
  // Within [lo, hi]; open_lo excludes lo.
  std::optional<double> number_in(const char* key, double lo, double hi, bool open_lo = false) const;
  std::optional<std::string> string(const char* key) const;

 private:
  const nlohmann::json& o_;
};

// Whether j is an integer (or an integral float) and, if so, its value.
std::optional<int64_t> as_integer(const nlohmann::json& j);

// A short name for a JSON value's type, for messages ("a string", "an array", ...).
const char* json_type_phrase(const nlohmann::json& j);

}  // namespace hs::server
