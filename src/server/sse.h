// Server-sent events as OpenAI streams use them: each event is one "data: <json>" line and a
// blank line; the stream ends with "data: [DONE]". JSON is written compact, so it never holds a
// newline that would split the event.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace hs::server {

std::string sse_data(const nlohmann::json& payload);
std::string sse_done();
// A comment line: clients ignore it (used to keep a connection alive).
std::string sse_comment(const std::string& text);

}  // namespace hs::server
