// What the engine service counts: request and token counters, latency histograms, gauges, and
// the engine's own readings (KV pages, preemptions). The service fills a ServiceStats under its
// lock; stats() hands out a copy, which the server renders as Prometheus text.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace hs {

enum class ServiceState { Loading, Ready, Draining, Stopped, Failed };
const char* service_state_name(ServiceState s);

// Fixed buckets given by their upper bounds (ascending); a last +Inf bucket is implied.
// Counts are kept per bucket; the Prometheus form (cumulative) is made when rendering.
// Not thread-safe: the owner locks.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds = latency_buckets());
  void observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }  // bounds().size() + 1 entries
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }
  // Value below which a fraction q of the observations fall, interpolated within its bucket
  // (an estimate; the +Inf bucket answers with the last finite bound).
  double quantile(double q) const;

  // Seconds, from 1 ms to 10 min: wide enough for a CPU engine and a GPU one alike.
  static std::vector<double> latency_buckets();

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

// Read from the engine on the engine thread after every step (see ServiceOptions::probe).
struct EngineReadings {
  bool kv_known = false;  // false: the probe could not tell (nothing KV-related is exported)
  KvStats kv;
  int64_t preemptions = 0;
};

struct ServiceStats {
  ServiceState state = ServiceState::Loading;
  int64_t requests_submitted = 0;                  // sequences accepted into the queue
  std::map<std::string, int64_t> requests_finished;  // by outcome: stop, length, cancelled, timeout, error
  std::map<std::string, int64_t> requests_rejected;  // by reason: queue_full, unavailable
  int64_t prompt_tokens = 0;      // of admitted sequences
  int64_t generation_tokens = 0;  // tokens generated (each sampled token, EOS included)
  int64_t engine_steps = 0;
  int running = 0;  // sequences in the engine
  int waiting = 0;  // sequences queued in the service
  EngineReadings engine;
  Histogram time_to_first_token;  // seconds from submission to the first token
  Histogram inter_token_latency;  // seconds between consecutive tokens of a sequence
  Histogram e2e_latency;          // seconds from submission to finish (stop or length)
  Histogram queue_time;           // seconds from submission to admission into the engine
};

}  // namespace hs
