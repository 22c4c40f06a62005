// One completions or chat completions request, from the parsed body to the last byte sent:
// submit the sequences to the EngineService, then either wait for them and answer with one JSON
// response, or stream SSE chunks as tokens arrive.
//
// Streaming commits to status 200 only once the first event arrives (the sequence entered the
// engine or failed), so a request the engine rejects still gets a proper 4xx; errors after that
// are sent as an SSE event {"error": {...}} before "data: [DONE]".
// A client that disconnects (seen by ConnectionWatch or a failed write) cancels its request.
#pragma once
#include <httplib.h>

#include <chrono>
#include <memory>

#include "engine/service.h"
#include "server/openai.h"

namespace hs::server {

struct GenerationContext {
  EngineService* service = nullptr;
  std::shared_ptr<const ModelView> model;
  std::chrono::milliseconds poll{50};
  // Held until the response is complete (streams outlive the handler); counts requests in flight.
  std::shared_ptr<void> in_flight;
};

// Throws ApiError for answers that are errors (bad request, queue full, unavailable, ...).
void serve_generation(ApiKind kind, const httplib::Request& req, httplib::Response& res, GenerationContext ctx);

}  // namespace hs::server
