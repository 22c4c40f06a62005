#include "server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <regex>

#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "server/connection_threads.h"
#include "server/errors.h"
#include "server/generation.h"
#include "server/http_util.h"
#include "server/metrics.h"

namespace hs::server {

using nlohmann::json;

namespace {

// Paths served, with the method each wants: a known path asked with another method is 405.
struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {
    {"/v1/completions", "POST"}, {"/completions", "POST"}, {"/v1/chat/completions", "POST"},
    {"/chat/completions", "POST"}, {"/v1/models", "GET"},   {"/models", "GET"},
    {"/health", "GET"},          {"/metrics", "GET"},      {"/tokenize", "POST"},
    {"/detokenize", "POST"},     {"/apply-template", "POST"},
};

const char* allowed_method(const std::string& path) {
  for (const Route& r : kRoutes)
    if (path == r.path) return r.method;
  if (path.rfind("/v1/models/", 0) == 0) return "GET";
  return nullptr;
}

// Compares without an early exit, so the time taken does not tell how much of a key was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(1, b.size())]);
  return diff == 0;
}

// httplib's server with its listening socket in reach: httplib 0.11 listens with a backlog of 5
// connections, which a burst of clients overflows (the kernel then drops their attempts, which
// they repeat only after a second).
struct Listener : httplib::Server {
  void deepen_backlog() {
    if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, SOMAXCONN);
  }
};

}  // namespace

struct HttpServer::Impl {
  ServerOptions options;
  EngineService& service;
  Listener http;
  mutable std::mutex model_mutex;
  std::shared_ptr<const ModelView> model;
  std::atomic<int64_t> in_flight{0};
  // The task queue of the running listen() (httplib owns it and deletes it, after joining its
  // threads, as listen() ends). Read by /metrics, whose handler runs on one of those threads.
  std::atomic<ConnectionThreads*> connections{nullptr};
  mutable std::mutex counters_mutex;
  std::map<int, int64_t> responses;

  Impl(ServerOptions o, EngineService& s) : options(std::move(o)), service(s) {}

  std::shared_ptr<const ModelView> current_model() const {
    std::lock_guard lock(model_mutex);
    return model;
  }

  // 503 unless the service is ready and the model known; returns the model.
  std::shared_ptr<const ModelView> ready_model() const {
    const ServiceState st = service.state();
    std::shared_ptr<const ModelView> m = current_model();
    if (st == ServiceState::Loading || (st == ServiceState::Ready && !m))
      throw ApiError(503, "the model is still loading; retry shortly", "", "loading");
    if (st == ServiceState::Failed) throw ApiError(503, "the model failed to load", "", "load_failed");
    if (st != ServiceState::Ready) throw ApiError(503, "the server is shutting down", "", "shutting_down");
    return m;
  }

  void check_key(const httplib::Request& req) const {
    if (options.api_key.empty()) return;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.empty())
      throw ApiError(401, "missing API key: send the header 'Authorization: Bearer <key>'", "", "invalid_api_key");
    if (auth.compare(0, prefix.size(), prefix) != 0 || !same_secret(auth.substr(prefix.size()), options.api_key))
      throw ApiError(401, "incorrect API key", "", "invalid_api_key");
  }

  // Wraps a route: API key, then the handler; ApiError becomes the error response.
  httplib::Server::Handler guarded(std::function<void(const httplib::Request&, httplib::Response&)> handler,
                                   bool needs_key = true) {
    return [this, handler = std::move(handler), needs_key](const httplib::Request& req, httplib::Response& res) {
      try {
        if (needs_key) check_key(req);
        handler(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      }
    };
  }

  void generation_route(ApiKind kind, const httplib::Request& req, httplib::Response& res) {
    GenerationContext ctx;
    ctx.service = &service;
    ctx.model = ready_model();
    ctx.poll = options.poll_interval;
    ++in_flight;
    ctx.in_flight = std::shared_ptr<void>(nullptr, [this](void*) { --in_flight; });
    serve_generation(kind, req, res, std::move(ctx));
  }

  json model_card(const ModelView& m) const {
    return {{"id", m.id},
            {"object", "model"},
            {"created", m.created},
            {"owned_by", "headshard"},
            {"max_model_len", m.context_length}};
  }

  void install_routes() {
    for (const char* path : {"/v1/completions", "/completions"})
      http.Post(path, guarded([this](const auto& req, auto& res) { generation_route(ApiKind::Completion, req, res); }));
    for (const char* path : {"/v1/chat/completions", "/chat/completions"})
      http.Post(path, guarded([this](const auto& req, auto& res) { generation_route(ApiKind::Chat, req, res); }));

    for (const char* path : {"/v1/models", "/models"})
      http.Get(path, guarded([this](const auto&, auto& res) {
        std::shared_ptr<const ModelView> m = ready_model();
        send_json(res, 200, {{"object", "list"}, {"data", json::array({model_card(*m)})}});
      }));
    http.Get(R"(/v1/models/(.+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
      std::shared_ptr<const ModelView> m = ready_model();
      const std::string name = req.matches[1];
      if (!m->accepts(name)) throw ApiError(404, "the model '" + name + "' does not exist", "model", "model_not_found");
      send_json(res, 200, model_card(*m));
    }));

    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const ServiceState st = service.state();
      const bool ok = st == ServiceState::Ready && current_model();
      json body = {{"status", ok ? "ok" : service_state_name(st)}};
      if (st == ServiceState::Failed) body["error"] = service.failure_message();
      send_json(res, ok ? 200 : 503, body);
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::shared_ptr<const ModelView> m = current_model();
      res.status = 200;
      res.set_content(render_metrics(service.stats(), counters(), m ? m->id : ""), "text/plain; version=0.0.4");
    });

    http.Post("/tokenize", guarded([this](const auto& req, auto& res) {
      send_json(res, 200, tokenize_endpoint(req.body, *ready_model()));
    }));
    http.Post("/detokenize", guarded([this](const auto& req, auto& res) {
      send_json(res, 200, detokenize_endpoint(req.body, *ready_model()));
    }));
    http.Post("/apply-template", guarded([this](const auto& req, auto& res) {
      send_json(res, 200, apply_template_endpoint(req.body, *ready_model()));
    }));
  }

  void install_error_handling() {
    // Called for every status >= 400 (ours too: leave a body that is already there), for
    // unmatched routes (404, or 405 for a known path), bodies over the limit (413) and
    // requests httplib could not parse (400).
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                        httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      int status = res.status;
      std::string message;
      std::string code;
      if (status == 404) {
        if (const char* method = allowed_method(req.path)) {
          status = 405;
          res.set_header("Allow", method);
          message = "method " + req.method + " is not allowed on " + req.path + "; use " + method;
          code = "method_not_allowed";
        } else {
          message = "unknown route " + req.method + " " + req.path;
          code = "unknown_route";
        }
      } else if (status == 413) {
        message = "the request body is larger than " + std::to_string(options.max_body_bytes) + " bytes";
        code = "body_too_large";
      } else {
        message = std::string("the request could not be handled (HTTP ") + std::to_string(status) + ")";
      }
      send_error(res, ApiError(status, message, "", code));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      spdlog::error("{} {}: {}", req.method, req.path, what);
      send_error(res, ApiError(500, "internal error: " + what, "", "internal_error"));
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      {
        std::lock_guard lock(counters_mutex);
        ++responses[res.status];
      }
      spdlog::debug("{} {} -> {}", req.method, req.path, res.status);
    });
  }

  HttpCounters counters() const {
    HttpCounters c;
    {
      std::lock_guard lock(counters_mutex);
      c.responses_by_status = responses;
    }
    c.in_flight = in_flight.load();
    if (const ConnectionThreads* q = connections.load()) {
      const ConnectionThreads::Counts n = q->counts();
      c.threads = n.threads;
      c.threads_busy = n.busy;
      c.connections_queued = n.queued;
    }
    return c;
  }
};

HttpServer::HttpServer(ServerOptions options, EngineService& service)
    : impl_(std::make_unique<Impl>(std::move(options), service)) {
  Impl& s = *impl_;
  const int most = s.options.threads > 0
                       ? s.options.threads
                       : std::max(4096, s.service.options().max_seqs + s.service.options().max_queue + 64);
  s.http.new_task_queue = [&s, most] {
    auto* q = new ConnectionThreads(std::min(most, 32), most, std::chrono::seconds(30));
    s.connections = q;
    return q;
  };
  s.http.set_payload_max_length(s.options.max_body_bytes);
  s.http.set_keep_alive_timeout(5);
  // Streams write one small event per token: with Nagle's algorithm on, an event may wait for the
  // client's acknowledgement of the one before.
  s.http.set_tcp_nodelay(true);
  // Generous: a client may take its time sending a large prompt; streams write as they go.
  s.http.set_read_timeout(30);
  s.http.set_write_timeout(30);
  s.install_routes();
  s.install_error_handling();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::set_model(std::shared_ptr<const ModelView> model) {
  std::lock_guard lock(impl_->model_mutex);
  impl_->model = std::move(model);
}

int HttpServer::bind() {
  Impl& s = *impl_;
  int port = s.options.port;
  if (port == 0) {
    port = s.http.bind_to_any_port(s.options.host);
    if (port < 0) throw std::runtime_error("cannot listen on " + s.options.host + " (any port)");
  } else if (!s.http.bind_to_port(s.options.host, port)) {
    throw std::runtime_error("cannot listen on " + s.options.host + ":" + std::to_string(port) +
                             " (in use, or not an address of this machine)");
  }
  s.http.deepen_backlog();
  return port;
}

void HttpServer::listen() {
  impl_->http.listen_after_bind();
  impl_->connections = nullptr;  // httplib has ended its threads and deleted it
}

bool HttpServer::listening() const { return impl_->http.is_running(); }

void HttpServer::stop() {
  if (impl_->http.is_running()) impl_->http.stop();
}

int64_t HttpServer::in_flight() const { return impl_->in_flight.load(); }

}  // namespace hs::server
