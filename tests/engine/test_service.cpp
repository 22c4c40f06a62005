// EngineService on a tiny synthetic model: events in order, FIFO admission within max_seqs,
// queue limits, cancellation of queued and running sequences (KV back at once), timeouts,
// draining and stopping, and a loader that fails.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "backend/backend.h"
#include "engine/service.h"
#include "model/model.h"

namespace hs {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Engine> tiny_engine(int max_seqs) {
  Model m = load_model("synthetic:tiny-llama@3");
  EngineOptions eo;
  eo.max_seqs = max_seqs;
  eo.kv_bytes = int64_t{8} << 20;
  return std::make_unique<Engine>(make_cpu_backend(m.weights), nullptr, eo);
}

GenerationRequest request(int max_tokens, std::vector<int32_t> prompt = {1, 2, 3, 4}) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  return r;
}

// Holds the engine thread: the probe runs on it after every step and idle tick, so a closed
// gate stops the loop there and makes the order of events deterministic.
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = true;
  int parked = 0;  // engine threads waiting at the gate
  void set(bool o) {
    {
      std::lock_guard lock(m);
      open = o;
    }
    cv.notify_all();
  }
  // Closes the gate and returns once an engine thread is parked at it.
  void close_and_park() {
    std::unique_lock lock(m);
    open = false;
    cv.wait(lock, [&] { return parked > 0; });
  }
  EngineProbe probe() {
    return [this](const Engine& e) {
      std::unique_lock lock(m);
      ++parked;
      cv.notify_all();
      cv.wait(lock, [&] { return open; });
      --parked;
      EngineReadings r;
      r.kv_known = true;
      r.kv = e.kv_stats();
      r.preemptions = e.preemptions();
      return r;
    };
  }
};

void wait_ready(EngineService& s) {
  for (int i = 0; i < 2000 && s.state() == ServiceState::Loading; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(s.state(), ServiceState::Ready);
}

// Pops events until every sequence of the handle ended (or 20 s passed).
std::vector<ServiceEvent> drain(RequestHandle& h) {
  std::vector<ServiceEvent> out;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!h.done() && std::chrono::steady_clock::now() < deadline)
    if (auto ev = h.next(50ms)) out.push_back(std::move(*ev));
  EXPECT_TRUE(h.done());
  return out;
}

TEST(EngineService, EventsInOrderAndGreedyOutputsMatchAnEngineAlone) {
  EngineService s({});
  s.start([] { return tiny_engine(16); });
  wait_ready(s);

  auto h = s.submit({request(6), request(3, {9, 8, 7})});
  const std::vector<ServiceEvent> events = drain(*h);
  std::vector<std::vector<int32_t>> tokens(2);
  std::vector<int> admitted(2, 0), ended(2, 0);
  for (const ServiceEvent& ev : events) {
    EXPECT_EQ(ended[ev.index], 0) << "an event after the last one";
    if (ev.kind == ServiceEvent::Kind::Admitted) ++admitted[ev.index];
    if (ev.kind == ServiceEvent::Kind::Token) {
      EXPECT_EQ(admitted[ev.index], 1);
      tokens[ev.index].push_back(ev.token.token);
    }
    if (ev.kind == ServiceEvent::Kind::Finished) {
      EXPECT_EQ(ev.token.finish, FinishReason::Length);
      ++ended[ev.index];
    }
    EXPECT_NE(ev.kind, ServiceEvent::Kind::Failed);
  }
  EXPECT_EQ(tokens[0].size(), 6u);
  EXPECT_EQ(tokens[1].size(), 3u);

  // The same request on an Engine of its own gives the same greedy tokens.
  auto alone = tiny_engine(1);
  std::vector<int32_t> expect;
  alone->submit(request(6), [&](const TokenEvent& ev) {
    if (ev.token >= 0) expect.push_back(ev.token);
  });
  alone->run_until_idle();
  EXPECT_EQ(tokens[0], expect);

  const ServiceStats st = s.stats();
  EXPECT_EQ(st.requests_submitted, 2);
  EXPECT_EQ(st.requests_finished.at("length"), 2);
  EXPECT_EQ(st.generation_tokens, 9);
  EXPECT_EQ(st.prompt_tokens, 7);
  EXPECT_EQ(st.time_to_first_token.count(), 2u);
  EXPECT_EQ(st.inter_token_latency.count(), 7u);
  EXPECT_EQ(st.e2e_latency.count(), 2u);
  EXPECT_EQ(st.queue_time.count(), 2u);
  EXPECT_TRUE(st.engine.kv_known);
  EXPECT_GT(st.engine_steps, 0);
}

TEST(EngineService, QueueLimitAndCancellation) {
  Gate gate;
  ServiceOptions o;
  o.max_seqs = 1;
  o.max_queue = 1;
  o.probe = gate.probe();
  EngineService s(o);
  s.start([] { return tiny_engine(1); });
  wait_ready(s);

  gate.close_and_park();
  auto running = s.submit({request(400)});
  auto queued = s.submit({request(400)});
  EXPECT_THROW(s.submit({request(4)}), QueueFull);  // 1 running + 1 waiting is the limit
  EXPECT_THROW(s.submit({request(4), request(4), request(4)}), std::invalid_argument);  // can never fit
  EXPECT_EQ(s.stats().requests_rejected.at("queue_full"), 1);
  EXPECT_EQ(s.stats().waiting, 2);

  // Cancelled while queued: it leaves the queue without entering the engine.
  queued->cancel();
  gate.set(true);
  auto ev = drain(*queued);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev.back().kind, ServiceEvent::Kind::Finished);
  EXPECT_EQ(ev.back().token.finish, FinishReason::Cancelled);

  // Running: after a few tokens it holds KV pages; park the engine, cancel, let it go.
  int n_tokens = 0;
  while (n_tokens < 3) {
    auto e = running->next(5s);
    ASSERT_TRUE(e);
    n_tokens += e->kind == ServiceEvent::Kind::Token;
  }
  gate.close_and_park();
  EXPECT_GT(s.stats().engine.kv.pages_used, 0);
  EXPECT_EQ(s.stats().running, 1);
  running->cancel();
  gate.set(true);
  ev = drain(*running);
  EXPECT_EQ(ev.back().kind, ServiceEvent::Kind::Finished);
  EXPECT_EQ(ev.back().token.finish, FinishReason::Cancelled);
  // The pages are back within a step.
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  while (s.stats().engine.kv.pages_used != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  const ServiceStats st = s.stats();
  EXPECT_EQ(st.engine.kv.pages_used, 0);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.requests_finished.at("cancelled"), 2);

  // Dropping a handle cancels too.
  { auto dropped = s.submit({request(400)}); }
  EXPECT_TRUE(s.wait_idle(std::chrono::steady_clock::now() + 5s));
}

TEST(EngineService, EngineRejectionAndTimeouts) {
  Gate gate;
  ServiceOptions o;
  o.request_timeout_s = 0.2;
  o.probe = gate.probe();
  EngineService s(o);
  s.start([] { return tiny_engine(4); });
  wait_ready(s);

  auto bad = s.submit({request(4, {1, 999})});  // outside the tiny vocabulary: the engine refuses
  auto ev = drain(*bad);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, ServiceEvent::Kind::Failed);
  EXPECT_EQ(ev[0].error, ServiceError::Rejected);
  EXPECT_NE(ev[0].message.find("outside the vocabulary"), std::string::npos);

  // Timed out while queued.
  gate.close_and_park();
  auto queued = s.submit({request(400)});
  std::this_thread::sleep_for(300ms);
  gate.set(true);
  ev = drain(*queued);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].error, ServiceError::Timeout);

  // Timed out while running.
  auto running = s.submit({request(400)});
  for (;;) {
    auto e = running->next(5s);
    ASSERT_TRUE(e);
    if (e->kind == ServiceEvent::Kind::Token) break;
  }
  gate.close_and_park();
  std::this_thread::sleep_for(300ms);
  gate.set(true);
  ev = drain(*running);
  EXPECT_EQ(ev.back().kind, ServiceEvent::Kind::Failed);
  EXPECT_EQ(ev.back().error, ServiceError::Timeout);
  EXPECT_NE(ev.back().message.find("did not finish within"), std::string::npos);
  EXPECT_EQ(s.stats().requests_finished.at("timeout"), 2);
  EXPECT_TRUE(s.wait_idle(std::chrono::steady_clock::now() + 2s));
  EXPECT_EQ(s.stats().engine.kv.pages_used, 0);
}

TEST(EngineService, DrainThenStopFailsWhatIsLeft) {
  Gate gate;
  ServiceOptions o;
  o.max_seqs = 1;
  o.probe = gate.probe();
  EngineService s(o);
  s.start([] { return tiny_engine(1); });
  wait_ready(s);

  // Drained: accepted work finishes, new work is refused.
  auto done = s.submit({request(5)});
  s.begin_drain();
  EXPECT_EQ(s.state(), ServiceState::Draining);
  EXPECT_THROW(s.submit({request(4)}), Unavailable);
  EXPECT_TRUE(s.wait_idle(std::chrono::steady_clock::now() + 5s));
  auto ev = drain(*done);
  EXPECT_EQ(ev.back().token.finish, FinishReason::Length);

  // Stopped with work still queued: it fails with Shutdown.
  Gate gate2;
  ServiceOptions o2 = o;
  o2.probe = gate2.probe();
  EngineService s2(o2);
  s2.start([] { return tiny_engine(1); });
  wait_ready(s2);
  gate2.close_and_park();
  auto a = s2.submit({request(300)});
  auto b = s2.submit({request(300)});
  std::thread opener([&] {
    std::this_thread::sleep_for(100ms);
    gate2.set(true);
  });
  s2.stop();
  opener.join();
  for (auto* h : {a.get(), b.get()}) {
    ev = drain(*h);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].kind, ServiceEvent::Kind::Failed);
    EXPECT_EQ(ev[0].error, ServiceError::Shutdown);
  }
  EXPECT_EQ(s2.state(), ServiceState::Stopped);
}

TEST(EngineService, LoaderFailure) {
  EngineService s({});
  EXPECT_THROW(s.submit({request(4)}), Unavailable);  // loading
  s.start([]() -> std::unique_ptr<Engine> { throw std::runtime_error("no such file: model.gguf"); });
  for (int i = 0; i < 400 && s.state() == ServiceState::Loading; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(s.state(), ServiceState::Failed);
  EXPECT_NE(s.failure_message().find("no such file"), std::string::npos);
  EXPECT_THROW(s.submit({request(4)}), Unavailable);
}

}  // namespace
}  // namespace hs
