// Errors for API clients, in OpenAI's shape:
//   {"error": {"message": "...", "type": "...", "param": "field" | null, "code": "..." | null}}
// Whoever finds a problem throws ApiError with the HTTP status it deserves; the HTTP layer turns
// it into the response. The statuses used:
//   400 invalid JSON, wrong types, values out of range, prompt + max_tokens over the context
//   401 missing or wrong API key          404 unknown route or model
//   405 known route, wrong method         408 the request's --timeout ran out
//   413 body over --max-body-bytes        429 queue full (with Retry-After)
//   500 an engine failure                 503 loading or draining
#pragma once
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace hs::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "");
  int status;
  std::string type;   // from the status (invalid_request_error, authentication_error, ...)
  std::string param;  // the request field at fault; "" is sent as null
  std::string code;   // a machine-readable code; "" is sent as null
  int retry_after_s = 0;  // > 0: sent as Retry-After
};

// 400 about one field.
ApiError invalid_param(const std::string& param, const std::string& message);

// OpenAI's error type for a status.
const char* error_type_for_status(int status);

nlohmann::json error_body(const ApiError& e);

// Serialises JSON for the wire: invalid UTF-8 (a token that is part of a character) becomes
// U+FFFD instead of an exception.
std::string dump_json(const nlohmann::json& j);

}  // namespace hs::server
