// The engine: sequences, their sampling and stopping, the paged KV cache's bookkeeping, and the
// batched step loop over a backend.
//
// One thread owns an Engine. submit() adds a request; step() asks the Scheduler (src/sched/)
// which sequences run (decode tokens first, then prefill chunks, within a token budget; the
// newest sequence preempted when the KV pool runs short), runs that batch on the backend and
// reports each new token through the request's callback. A preempted sequence is recomputed
// from its tokens later.
//
// With a backend that overlaps steps (Backend::overlaps_steps(), the CUDA backend), step n + 1 is
// scheduled and launched while step n still runs: a sequence waiting for the token step n samples
// continues with a stand-in that the backend replaces on the device, and step n's tokens are
// reported once step n + 1 is on its way. A sequence that stops at step n (end of generation, a
// stop string, cancellation) has its extra token of step n + 1 dropped. Requests whose sampling
// needs the host (log-probabilities, penalties over the tokens so far) run without overlap while
// they are live.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/sampling.h"
#include "engine/stop_strings.h"
#include "kv/paged_kv_cache.h"
#include "model/tokenizer.h"
#include "sched/scheduler.h"
#include "shard/shard_plan.h"

namespace hs {

enum class FinishReason { None, Stop, Length, Cancelled };
const char* finish_reason_name(FinishReason r);

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int max_tokens = 16;
  std::vector<std::string> stop;  // stop strings (not part of the output)
  bool ignore_eos = false;
  int logprobs = -1;  // -1: none; k >= 0: the chosen token's log-probability and the top k
};

struct TokenEvent {
  int64_t seq_id = 0;
  int32_t token = -1;                 // -1 for an event that carries no token
  std::string text;                   // output text that became final with this event
  FinishReason finish = FinishReason::None;
  // With GenerationRequest::logprobs >= 0: log-softmax of the (penalized) logits.
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top_logprobs;  // best first
};

using TokenCallback = std::function<void(const TokenEvent&)>;

struct EngineOptions {
  int max_batch_tokens = 512;    // tokens per step, prefill chunks and decodes together
  int max_seqs = 64;             // sequences running at once
  std::optional<ShardPlan> plan; // default: dense with blocks of 64
  int64_t kv_bytes = int64_t{1} << 30;  // KV page pool size
};

struct KvStats {
  int64_t pages_total = 0, pages_used = 0, page_bytes = 0;
  int64_t pages_dense = 0, pages_strided = 0, pages_streaming = 0;
};

class Engine {
 public:
  // tokenizer may be null (token ids only: no text in events, no stop strings, no EOS).
  // Throws std::invalid_argument for a plan that does not fit the model or a pool too small
  // for one block per head.
  Engine(std::unique_ptr<Backend> backend, std::shared_ptr<const Tokenizer> tokenizer, EngineOptions options = {});
  ~Engine();

  // Validates and queues a request; throws std::invalid_argument with a message for the user.
  int64_t submit(GenerationRequest request, TokenCallback on_event);
  void cancel(int64_t seq_id);

  // Runs one batch step. Returns false when there was nothing to do.
  bool step();
  void run_until_idle();
  bool idle() const;

  Backend& backend() { return *backend_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const PagedKvCache& kv() const { return *kv_; }
  KvStats kv_stats() const;
  int64_t preemptions() const { return preemptions_; }
  int running() const;  // sequences holding KV pages or being computed
  int waiting() const;

 private:
  struct Sequence;
  // A launched step that was not collected: per chunk its sequence, and the chunks that sample.
  struct InFlight {
    std::vector<Sequence*> seqs;
    std::vector<size_t> ready;
    int logits = 0;  // which of logits_
  };
  void finish(Sequence& s, FinishReason reason);
  void emit_token(Sequence& s, int32_t token);
  bool overlap_allowed() const;
  void collect_in_flight();

  std::unique_ptr<Backend> backend_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  EngineOptions options_;
  Scheduler scheduler_;
  std::unique_ptr<PagedKvCache> kv_;
  std::vector<std::unique_ptr<Sequence>> seqs_;  // in arrival order
  int64_t next_id_ = 1;
  int64_t preemptions_ = 0;
  Logits logits_[2];                // one per step in flight
  std::optional<InFlight> in_flight_;
  int next_logits_ = 0;
  std::vector<SampleSpec> specs_;  // this step's samples for the backend
  std::vector<int32_t> sampled_;   // this step's sampled tokens
  KvStepMeta meta_;
};

}  // namespace hs
