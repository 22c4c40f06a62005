// EngineService: one Engine on its own thread, serving many client (HTTP) threads.
//
// The boundary: client threads only call submit(), stats(), state() and the RequestHandle they
// got; everything that touches the Engine (submit, cancel, step, reading its KV state) happens
// on the engine thread. Swapping the Engine's batching for another scheduler changes nothing
// here as long as Engine keeps submit / cancel / step and its token callbacks.
//
// Flow. submit() takes the sequences of one API request (several for n > 1 or several prompts)
// all or none: it throws QueueFull when the sequences in flight (running + waiting) would pass
// max_seqs + max_queue, and Unavailable unless the service is Ready. The engine thread admits
// waiting sequences into the Engine in FIFO order while fewer than max_seqs run, steps it, and
// turns every token callback into a ServiceEvent on the submission's handle. Client threads pop
// events with RequestHandle::next (blocking with a timeout).
//
// Cancellation: RequestHandle::cancel (or dropping the handle) is seen by the engine thread
// before its next step: a waiting sequence leaves the queue, a running one is cancelled in the
// Engine, which frees its KV pages at once. The handle then gets Finished with
// FinishReason::Cancelled.
//
// Timeout (ServiceOptions::request_timeout_s > 0): a sequence not finished that long after
// submission is cancelled the same way, and its handle gets Failed with ServiceError::Timeout.
// It is deliberately not finish_reason "length": the output stopped for a reason the client did
// not choose (and may be empty), so the server reports an error (HTTP 408, or an SSE error
// event once a stream has started).
//
// Lifecycle: Loading (start() runs the loader on the engine thread) -> Ready -> Draining
// (begin_drain(): new submissions are refused, accepted ones go on) -> Stopped (stop(): what is
// left is failed with ServiceError::Shutdown and the thread ends). A loader that throws leaves
// the service Failed with failure_message().
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/service_stats.h"

namespace hs {

// The queue is full; try again after retry_after_s seconds.
class QueueFull : public std::runtime_error {
 public:
  QueueFull(const std::string& what, int retry_after_s) : std::runtime_error(what), retry_after_s(retry_after_s) {}
  int retry_after_s;
};

// The service is loading, draining or stopped.
class Unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ServiceError { None, Timeout, Rejected, Internal, Shutdown };
const char* service_error_name(ServiceError e);

struct ServiceEvent {
  enum class Kind {
    Admitted,  // the sequence entered the engine (it passed the engine's own validation)
    Token,     // token: one generated token (token.token >= 0) with the text it made final
    Finished,  // token: the last event (finish reason Stop, Length or Cancelled; maybe final text)
    Failed,    // error + message: the sequence ended without finishing normally
  };
  Kind kind = Kind::Token;
  int index = 0;  // which of the submitted sequences
  TokenEvent token;
  ServiceError error = ServiceError::None;
  std::string message;
};

class EngineService;

// The client's side of one submission. Every sequence produces exactly one Finished or Failed
// event, last. Thread-safe; must not outlive its EngineService.
class RequestHandle {
 public:
  ~RequestHandle();  // cancels the sequences that have not ended
  RequestHandle(const RequestHandle&) = delete;
  RequestHandle& operator=(const RequestHandle&) = delete;

  // The next event, waiting up to `wait`; nullopt when none came in time.
  std::optional<ServiceEvent> next(std::chrono::milliseconds wait);
  // Asks the engine thread to cancel every sequence of the submission; idempotent.
  void cancel();
  int size() const { return size_; }
  // Every sequence has ended and its last event has been popped.
  bool done() const;

  struct Shared;  // the state the engine thread writes into

 private:
  friend class EngineService;
  RequestHandle(EngineService* service, std::shared_ptr<Shared> shared, int size)
      : service_(service), shared_(std::move(shared)), size_(size) {}
  EngineService* service_;
  std::shared_ptr<Shared> shared_;
  int size_;
  int ended_popped_ = 0;
};

// Called on the engine thread after each step to read what the Engine knows about its KV
// memory and preemptions; the default reads Engine::kv_stats() and Engine::preemptions().
using EngineProbe = std::function<EngineReadings(const Engine&)>;

struct ServiceOptions {
  int max_seqs = 16;               // sequences in the engine at once
  int max_queue = 128;             // sequences waiting beyond those
  double request_timeout_s = 0.0;  // 0: none
  EngineProbe probe;               // empty: the default probe
  int retry_after_s = 1;           // what QueueFull suggests
};

class EngineService {
 public:
  explicit EngineService(ServiceOptions options);
  ~EngineService();  // stop()s
  EngineService(const EngineService&) = delete;
  EngineService& operator=(const EngineService&) = delete;

  // Starts the engine thread, which calls `load` (state Loading until it returns) and then
  // serves. Call once.
  void start(std::function<std::unique_ptr<Engine>()> load);

  // Queues the sequences of one request (all or none). Throws QueueFull, Unavailable, or
  // std::invalid_argument when there are more sequences than the service could ever hold.
  std::shared_ptr<RequestHandle> submit(std::vector<GenerationRequest> requests);

  ServiceState state() const { return state_.load(); }
  std::string failure_message() const;
  const ServiceOptions& options() const { return options_; }

  // Refuses new submissions from now on; accepted ones go on.
  void begin_drain();
  // Waits until no sequence is waiting or running, or until `deadline`; true when idle.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);
  // Fails what is left (ServiceError::Shutdown), ends the engine thread. Idempotent.
  void stop();

  ServiceStats stats() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Job;
  friend class RequestHandle;

  void wake();
  void run(std::function<std::unique_ptr<Engine>()> load);
  void serve(Engine& engine);
  // Engine-thread helpers; `lock` holds mutex_.
  void sweep_waiting(Clock::time_point now);
  void admit(Engine& engine, Clock::time_point now);
  void sweep_running(Engine& engine, Clock::time_point now);
  void on_engine_event(Job& job, const TokenEvent& ev);
  void end_job(Job& job, ServiceEvent last, const char* outcome);
  void deliver_ended();
  void fail_all(Engine* engine, ServiceError error, const std::string& message);
  void publish(Engine& engine);

  ServiceOptions options_;
  std::atomic<ServiceState> state_{ServiceState::Loading};
  std::thread thread_;

  mutable std::mutex mutex_;  // guards the fields below up to stats_mutex_
  std::condition_variable cv_;       // wakes the engine thread
  std::condition_variable idle_cv_;  // wakes wait_idle
  std::deque<std::unique_ptr<Job>> waiting_;
  int in_engine_ = 0;  // mirror of running_.size() for submit()'s capacity check
  bool stop_requested_ = false;
  bool wake_pending_ = false;
  std::string failure_;

  std::vector<std::unique_ptr<Job>> running_;  // engine thread only
  // Last events of sequences that ended, held until the gauges and KV readings no longer count
  // them: a client that saw its request end and then reads /metrics sees its pages freed.
  std::vector<std::pair<std::shared_ptr<RequestHandle::Shared>, ServiceEvent>> ended_;  // engine thread only

  mutable std::mutex stats_mutex_;
  ServiceStats stats_;
};

}  // namespace hs
