// Small helpers shared by the HTTP routes: JSON bodies and OpenAI error responses.
#pragma once
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "server/errors.h"

namespace hs::server {

void send_json(httplib::Response& res, int status, const nlohmann::json& body);
// The error object with its status, and Retry-After when the error carries one.
void send_error(httplib::Response& res, const ApiError& e);

}  // namespace hs::server
