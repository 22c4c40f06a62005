#include "server/sse.h"

#include "server/errors.h"

namespace hs::server {

std::string sse_data(const nlohmann::json& payload) { return "data: " + dump_json(payload) + "\n\n"; }

std::string sse_done() { return "data: [DONE]\n\n"; }

std::string sse_comment(const std::string& text) {
  std::string line = ": ";
  for (char c : text) line += (c == '\n' || c == '\r') ? ' ' : c;  // one line only
  return line + "\n\n";
}

}  // namespace hs::server
