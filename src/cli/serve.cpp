// `headshard serve`: listens first (so /health answers 503 while the model loads), loads the
// model on the engine thread, serves, and on SIGTERM or SIGINT drains: new requests get 503,
// accepted ones have --grace-seconds to finish, then the rest are failed and the process exits 0.
#include "cli/serve.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

#include "backend/backend.h"
#include "cli/device.h"
#include "cli/serve_config.h"
#include "engine/engine.h"
#include "engine/service.h"
#include "model/chat.h"
#include "model/model.h"
#include "server/http_server.h"
#include "server/model_view.h"
#include "shard/shard_plan.h"

namespace {

using Clock = std::chrono::steady_clock;

// Waits for SIGTERM or SIGINT (blocked in every thread, so they queue for sigtimedwait) up to
// `timeout`; true when one came.
bool wait_signal(const sigset_t& set, std::chrono::milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>((timeout.count() % 1000) * 1000000)};
  const int sig = sigtimedwait(&set, nullptr, &ts);
  if (sig > 0) spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal");
  return sig > 0;
}

// Each open connection is a file descriptor: where the soft limit is below the hard one (often
// 1024 outside containers), take the hard one, so that the HTTP threads are what bounds them.
void raise_open_files_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= r.rlim_max) return;
  const rlim_t was = r.rlim_cur;
  r.rlim_cur = r.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &r) == 0) spdlog::debug("open files limit raised from {} to {}", was, r.rlim_cur);
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::printf("usage:\n%s", hs::cli::kServeUsage);
      return 0;
    }
  const hs::cli::ServeConfig cfg = hs::cli::parse_serve_config(argc, argv, 2);
  hs::cli::resolve_device(cfg.device);  // --device cuda fails here, clearly, without CUDA or a GPU

  // Before any thread starts: SIGTERM/SIGINT are taken by sigtimedwait here, never delivered
  // to a worker; a write to a vanished client must fail with EPIPE, not kill the process.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  raise_open_files_limit();

  hs::ServiceOptions so;
  so.max_seqs = cfg.max_seqs;
  so.max_queue = cfg.max_queue;
  so.request_timeout_s = cfg.timeout_seconds;
  hs::EngineService service(so);

  hs::server::ServerOptions ho;
  ho.host = cfg.host;
  ho.port = cfg.port;
  ho.api_key = cfg.api_key;
  ho.max_body_bytes = static_cast<size_t>(cfg.max_body_bytes);
  ho.threads = cfg.http_threads;
  hs::server::HttpServer server(ho, service);
  int port = 0;
  try {
    port = server.bind();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  std::thread http_thread([&] { server.listen(); });
  // stop() before listen() has started would be lost; wait for it to accept.
  for (int i = 0; i < 500 && !server.listening(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Tests and scripts read this line to find the port (with --port 0).
  spdlog::info("listening on http://{}:{} (loading {})", cfg.host, port, cfg.model);
  if (cfg.host != "127.0.0.1" && cfg.host != "localhost" && cfg.host != "::1" && cfg.api_key.empty())
    spdlog::warn("listening on {} without --api-key: anyone who can reach it can use it", cfg.host);

  const std::string model_id = cfg.served_model_name.empty() ? hs::server::default_model_id(cfg.model)
                                                             : cfg.served_model_name;
  service.start([&]() -> std::unique_ptr<hs::Engine> {
    const auto t0 = Clock::now();
    auto model = std::make_shared<hs::Model>(hs::load_model(cfg.model));
    hs::EngineOptions eo;
    eo.max_seqs = cfg.max_seqs;
    eo.max_batch_tokens = cfg.max_batch_tokens;
    eo.plan = hs::plan_from_spec(cfg.plan, model->config);
    if (cfg.kv_memory) eo.kv_bytes = *cfg.kv_memory;
    std::vector<std::string> aliases = {cfg.model};
    if (model_id != hs::server::default_model_id(cfg.model)) aliases.push_back(hs::server::default_model_id(cfg.model));
    auto view = std::make_shared<hs::server::ModelView>(
        hs::server::make_model_view(model, model_id, aliases, cfg.ctx_size));
    auto engine = std::make_unique<hs::Engine>(hs::cli::make_backend(cfg.device, model->weights), model->tokenizer, eo);
    server.set_model(view);
    spdlog::info("ready: {} ({}, {} layers, context {}, chat template {}) loaded in {:.1f} s", model_id,
                 hs::arch_name(model->config.arch), model->config.n_layers, view->context_length,
                 hs::chat_format_name(*model), std::chrono::duration<double>(Clock::now() - t0).count());
    return engine;
  });

  // Serve until a signal, or until loading fails.
  int status = 0;
  for (;;) {
    if (wait_signal(signals, std::chrono::milliseconds(200))) break;
    if (service.state() == hs::ServiceState::Failed) {
      spdlog::error("cannot serve: {}", service.failure_message());
      status = 1;
      break;
    }
  }

  if (status == 0) {
    // Drain: refuse new work, let accepted requests finish within the grace period (a second
    // signal cuts it short), including the HTTP threads still writing their responses.
    service.begin_drain();
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(cfg.grace_seconds));
    bool cut_short = false;
    while (Clock::now() < deadline && (service.stats().running + service.stats().waiting > 0 || server.in_flight() > 0)) {
      if (wait_signal(signals, std::chrono::milliseconds(50))) {
        cut_short = true;
        break;
      }
    }
    const hs::ServiceStats st = service.stats();
    if (st.running + st.waiting > 0)
      spdlog::warn("{}: {} sequences still running or waiting are failed", cut_short ? "second signal" : "grace period over",
                   st.running + st.waiting);
  }
  service.stop();
  // Let handlers send what the stop produced (errors for what was left) before the sockets go.
  const auto flush_deadline = Clock::now() + std::chrono::seconds(2);
  while (server.in_flight() > 0 && Clock::now() < flush_deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  server.stop();
  http_thread.join();
  spdlog::info("stopped");
  return status;
}
