#include "engine/service.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace hs {

const char* service_error_name(ServiceError e) {
  switch (e) {
    case ServiceError::None: return "none";
    case ServiceError::Timeout: return "timeout";
    case ServiceError::Rejected: return "rejected";
    case ServiceError::Internal: return "internal";
    case ServiceError::Shutdown: return "shutdown";
  }
  return "unknown";
}

// ---- RequestHandle ------------------------------------------------------------------------

struct RequestHandle::Shared {
  std::mutex m;
  std::condition_variable cv;
  std::deque<ServiceEvent> events;
  std::atomic<bool> cancel{false};

  void push(ServiceEvent ev) {
    {
      std::lock_guard lock(m);
      events.push_back(std::move(ev));
    }
    cv.notify_all();
  }
};

RequestHandle::~RequestHandle() {
  if (!done()) cancel();
}

std::optional<ServiceEvent> RequestHandle::next(std::chrono::milliseconds wait) {
  std::unique_lock lock(shared_->m);
  if (!shared_->cv.wait_for(lock, wait, [&] { return !shared_->events.empty(); })) return std::nullopt;
  ServiceEvent ev = std::move(shared_->events.front());
  shared_->events.pop_front();
  if (ev.kind == ServiceEvent::Kind::Finished || ev.kind == ServiceEvent::Kind::Failed) ++ended_popped_;
  return ev;
}

void RequestHandle::cancel() {
  if (shared_->cancel.exchange(true)) return;
  service_->wake();
}

bool RequestHandle::done() const { return ended_popped_ >= size_; }

// ---- EngineService ------------------------------------------------------------------------

struct EngineService::Job {
  std::shared_ptr<RequestHandle::Shared> shared;
  int index = 0;
  GenerationRequest req;
  size_t prompt_len = 0;
  Clock::time_point arrival;
  std::optional<Clock::time_point> deadline;
  int64_t seq_id = -1;  // the engine's id once admitted
  bool ended = false;
  // Why the service itself cancelled the sequence in the engine (None: the client did).
  ServiceError cause = ServiceError::None;
  std::string cause_message;
  std::optional<Clock::time_point> last_token;
};

namespace {

EngineReadings default_probe(const Engine& engine) {
  EngineReadings r;
  r.kv_known = true;
  r.kv = engine.kv_stats();
  r.preemptions = engine.preemptions();
  return r;
}

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

EngineService::EngineService(ServiceOptions options) : options_(std::move(options)) {
  if (options_.max_seqs < 1) throw std::invalid_argument("max_seqs must be at least 1");
  if (options_.max_queue < 0) throw std::invalid_argument("max_queue must not be negative");
  if (!options_.probe) options_.probe = default_probe;
}

EngineService::~EngineService() { stop(); }

void EngineService::start(std::function<std::unique_ptr<Engine>()> load) {
  if (thread_.joinable()) throw std::logic_error("EngineService::start called twice");
  thread_ = std::thread([this, load = std::move(load)]() mutable { run(std::move(load)); });
}

std::string EngineService::failure_message() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

void EngineService::wake() {
  {
    std::lock_guard lock(mutex_);
    wake_pending_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<RequestHandle> EngineService::submit(std::vector<GenerationRequest> requests) {
  if (requests.empty()) throw std::invalid_argument("nothing to submit");
  const int k = static_cast<int>(requests.size());
  const int capacity = options_.max_seqs + options_.max_queue;
  if (k > capacity)
    throw std::invalid_argument("the request asks for " + std::to_string(k) + " sequences but the server holds at most " +
                                std::to_string(capacity) + " at once");
  auto shared = std::make_shared<RequestHandle::Shared>();
  const auto now = Clock::now();
  {
    std::lock_guard lock(mutex_);
    const ServiceState st = state_.load();
    if (st != ServiceState::Ready) {
      std::lock_guard slock(stats_mutex_);
      ++stats_.requests_rejected["unavailable"];
      throw Unavailable(st == ServiceState::Loading ? "the model is still loading" : "the server is shutting down");
    }
    const int in_flight = in_engine_ + static_cast<int>(waiting_.size());
    if (in_flight + k > capacity) {
      std::lock_guard slock(stats_mutex_);
      ++stats_.requests_rejected["queue_full"];
      throw QueueFull("the server is busy: " + std::to_string(in_flight) + " sequences are running or waiting (limit " +
                          std::to_string(capacity) + "); retry later",
                      options_.retry_after_s);
    }
    for (int i = 0; i < k; ++i) {
      auto job = std::make_unique<Job>();
      job->shared = shared;
      job->index = i;
      job->prompt_len = requests[i].prompt.size();
      job->req = std::move(requests[i]);
      job->arrival = now;
      if (options_.request_timeout_s > 0)
        job->deadline = now + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(options_.request_timeout_s));
      waiting_.push_back(std::move(job));
    }
    wake_pending_ = true;
    std::lock_guard slock(stats_mutex_);
    stats_.requests_submitted += k;
  }
  cv_.notify_all();
  return std::shared_ptr<RequestHandle>(new RequestHandle(this, std::move(shared), k));
}

void EngineService::begin_drain() {
  ServiceState s = state_.load();
  while ((s == ServiceState::Loading || s == ServiceState::Ready) &&
         !state_.compare_exchange_weak(s, ServiceState::Draining)) {
  }
  spdlog::info("draining: new requests are refused, running ones go on");
}

bool EngineService::wait_idle(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  return idle_cv_.wait_until(lock, deadline, [&] { return waiting_.empty() && in_engine_ == 0; });
}

void EngineService::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (state_.load() != ServiceState::Failed) state_ = ServiceState::Stopped;
}

ServiceStats EngineService::stats() const {
  std::lock_guard lock(mutex_);
  std::lock_guard slock(stats_mutex_);
  ServiceStats s = stats_;
  s.state = state_.load();
  s.waiting = static_cast<int>(waiting_.size());
  s.running = in_engine_;
  return s;
}

// ---- the engine thread ---------------------------------------------------------------------

void EngineService::run(std::function<std::unique_ptr<Engine>()> load) {
  std::unique_ptr<Engine> engine;
  try {
    engine = load();
    if (!engine) throw std::runtime_error("the loader returned no engine");
  } catch (const std::exception& e) {
    spdlog::error("loading failed: {}", e.what());
    {
      std::lock_guard lock(mutex_);
      failure_ = e.what();
    }
    state_ = ServiceState::Failed;
    fail_all(nullptr, ServiceError::Shutdown, "the model failed to load");
    return;
  }
  ServiceState expected = ServiceState::Loading;
  state_.compare_exchange_strong(expected, ServiceState::Ready);  // stays Draining if asked meanwhile
  publish(*engine);
  serve(*engine);
  fail_all(engine.get(), ServiceError::Shutdown, "the server is shutting down");
  engine.reset();  // the backend's memory goes with the thread that used it
}

void EngineService::serve(Engine& engine) {
  // How long the idle loop sleeps at most: deadlines and cancellations of queued requests are
  // checked at least this often even when nobody wakes the thread.
  constexpr auto kIdleTick = std::chrono::milliseconds(50);
  for (;;) {
    auto now = Clock::now();
    {
      std::lock_guard lock(mutex_);
      if (stop_requested_) return;
      wake_pending_ = false;
      sweep_waiting(now);
      admit(engine, now);
    }
    sweep_running(engine, now);
    bool worked = false;
    if (!running_.empty()) {
      try {
        worked = engine.step();
      } catch (const std::exception& e) {
        // The step's state is unknown: end every running sequence with the error and go on.
        spdlog::error("engine step failed: {}", e.what());
        for (auto& job : running_) {
          if (job->ended) continue;
          job->cause = ServiceError::Internal;
          job->cause_message = std::string("the engine failed: ") + e.what();
          engine.cancel(job->seq_id);
          if (!job->ended)
            end_job(*job, {ServiceEvent::Kind::Failed, job->index, {}, job->cause, job->cause_message}, "error");
        }
      }
      std::lock_guard slock(stats_mutex_);
      ++stats_.engine_steps;
    }
    running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& j) { return j->ended; }),
                   running_.end());
    publish(engine);
    {
      std::lock_guard lock(mutex_);
      in_engine_ = static_cast<int>(running_.size());
    }
    deliver_ended();
    std::unique_lock lock(mutex_);
    if (waiting_.empty() && in_engine_ == 0) idle_cv_.notify_all();
    if (!worked && running_.empty())
      cv_.wait_for(lock, kIdleTick, [&] { return wake_pending_ || stop_requested_ || !waiting_.empty(); });
  }
}

void EngineService::sweep_waiting(Clock::time_point now) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    Job& job = **it;
    if (job.shared->cancel.load()) {
      TokenEvent ev;
      ev.finish = FinishReason::Cancelled;
      end_job(job, {ServiceEvent::Kind::Finished, job.index, ev, ServiceError::None, {}}, "cancelled");
    } else if (job.deadline && now >= *job.deadline) {
      end_job(job,
              {ServiceEvent::Kind::Failed, job.index, {}, ServiceError::Timeout,
               "the request did not finish within " + std::to_string(options_.request_timeout_s) + " s (it was still queued)"},
              "timeout");
    }
    it = job.ended ? waiting_.erase(it) : it + 1;
  }
}

void EngineService::admit(Engine& engine, Clock::time_point now) {
  while (static_cast<int>(running_.size()) < options_.max_seqs && !waiting_.empty()) {
    std::unique_ptr<Job> job = std::move(waiting_.front());
    waiting_.pop_front();
    Job* j = job.get();
    try {
      j->seq_id = engine.submit(std::move(j->req), [this, j](const TokenEvent& ev) { on_engine_event(*j, ev); });
    } catch (const std::invalid_argument& e) {
      end_job(*j, {ServiceEvent::Kind::Failed, j->index, {}, ServiceError::Rejected, e.what()}, "rejected");
      continue;
    }
    j->req = GenerationRequest{};  // the engine has its own copy
    j->shared->push({ServiceEvent::Kind::Admitted, j->index, {}, ServiceError::None, {}});
    {
      std::lock_guard slock(stats_mutex_);
      stats_.queue_time.observe(seconds(now - j->arrival));
      stats_.prompt_tokens += static_cast<int64_t>(j->prompt_len);
    }
    running_.push_back(std::move(job));
  }
  in_engine_ = static_cast<int>(running_.size());
}

void EngineService::sweep_running(Engine& engine, Clock::time_point now) {
  for (auto& job : running_) {
    if (job->ended) continue;
    if (job->shared->cancel.load()) {
      engine.cancel(job->seq_id);  // the callback ends the job (Finished, Cancelled)
    } else if (job->deadline && now >= *job->deadline) {
      job->cause = ServiceError::Timeout;
      job->cause_message =
          "the request did not finish within " + std::to_string(options_.request_timeout_s) + " s";
      engine.cancel(job->seq_id);
    }
  }
}

void EngineService::on_engine_event(Job& job, const TokenEvent& ev) {
  if (job.ended) return;
  const auto now = Clock::now();
  if (ev.finish == FinishReason::None) {
    {
      std::lock_guard slock(stats_mutex_);
      if (ev.token >= 0) {
        ++stats_.generation_tokens;
        if (!job.last_token)
          stats_.time_to_first_token.observe(seconds(now - job.arrival));
        else
          stats_.inter_token_latency.observe(seconds(now - *job.last_token));
      }
    }
    if (ev.token >= 0) job.last_token = now;
    job.shared->push({ServiceEvent::Kind::Token, job.index, ev, ServiceError::None, {}});
    return;
  }
  if (ev.finish == FinishReason::Cancelled && job.cause != ServiceError::None) {
    const char* outcome = job.cause == ServiceError::Timeout ? "timeout"
                          : job.cause == ServiceError::Shutdown ? "shutdown"
                                                                : "error";
    end_job(job, {ServiceEvent::Kind::Failed, job.index, {}, job.cause, job.cause_message}, outcome);
    return;
  }
  if (ev.finish == FinishReason::Stop || ev.finish == FinishReason::Length) {
    std::lock_guard slock(stats_mutex_);
    stats_.e2e_latency.observe(seconds(now - job.arrival));
  }
  end_job(job, {ServiceEvent::Kind::Finished, job.index, ev, ServiceError::None, {}}, finish_reason_name(ev.finish));
}

void EngineService::end_job(Job& job, ServiceEvent last, const char* outcome) {
  job.ended = true;
  {
    std::lock_guard slock(stats_mutex_);
    ++stats_.requests_finished[outcome];
  }
  ended_.emplace_back(job.shared, std::move(last));
}

void EngineService::deliver_ended() {
  for (auto& [shared, ev] : ended_) shared->push(std::move(ev));
  ended_.clear();
}

void EngineService::fail_all(Engine* engine, ServiceError error, const std::string& message) {
  {
    std::lock_guard lock(mutex_);
    for (auto& job : waiting_)
      end_job(*job, {ServiceEvent::Kind::Failed, job->index, {}, error, message},
              error == ServiceError::Shutdown ? "shutdown" : "error");
    waiting_.clear();
  }
  for (auto& job : running_) {
    if (job->ended || !engine) continue;
    job->cause = error;
    job->cause_message = message;
    engine->cancel(job->seq_id);
    if (!job->ended) end_job(*job, {ServiceEvent::Kind::Failed, job->index, {}, error, message}, "shutdown");
  }
  running_.clear();
  {
    std::lock_guard lock(mutex_);
    in_engine_ = 0;
  }
  if (engine) publish(*engine);
  deliver_ended();
  std::lock_guard lock(mutex_);
  idle_cv_.notify_all();
}

void EngineService::publish(Engine& engine) {
  EngineReadings r;
  try {
    r = options_.probe(engine);
  } catch (const std::exception& e) {
    spdlog::warn("engine probe failed: {}", e.what());
  }
  std::lock_guard slock(stats_mutex_);
  stats_.engine = r;
}

}  // namespace hs
