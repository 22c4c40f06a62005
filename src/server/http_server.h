// The HTTP front: cpp-httplib routes for the OpenAI API and the operational endpoints.
//
//   POST /v1/completions, /v1/chat/completions   (also without /v1)
//   GET  /v1/models, /v1/models/{id}
//   GET  /health     200 {"status": "ok"} when ready; 503 while loading, draining or failed
//   GET  /metrics    Prometheus text
//   POST /tokenize, /detokenize, /apply-template  (llama.cpp's shapes)
//
// HTTP threads only parse, validate, submit to the EngineService and stream; they never touch
// the engine. With an API key, every route but /health and /metrics wants
// "Authorization: Bearer <key>". Errors are OpenAI error objects (server/errors.h). A client
// that disconnects, while queued or running, has its request cancelled.
#pragma once
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/service.h"
#include "server/openai.h"

namespace hs::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see bind())
  std::string api_key;
  size_t max_body_bytes = size_t{8} << 20;
  // The most HTTP threads (server/connection_threads.h): each open connection holds one, while its
  // request arrives (up to 30 s between two reads), is served, and for up to 5 s of keep-alive
  // idling after. 32 wait for connections; more start when those are busy and end after 30 s idle.
  // 0: 4096, or more where the service holds more requests (max_seqs + max_queue, plus 64).
  int threads = 0;
  // How often a waiting handler checks that its client is still there.
  std::chrono::milliseconds poll_interval{50};
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, EngineService& service);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The served model, once loaded (until then generation routes answer 503).
  void set_model(std::shared_ptr<const ModelView> model);
  // Binds the listening socket; returns the port. Throws std::runtime_error when it cannot.
  int bind();
  // Serves until stop() (call bind() first). Returns when the server has stopped.
  void listen();
  // Whether listen() is accepting connections.
  bool listening() const;
  // Stops accepting and ends the worker threads (they finish the response they are writing).
  void stop();

  // Generation requests being served (streams included).
  int64_t in_flight() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::server
