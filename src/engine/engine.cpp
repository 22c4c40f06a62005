#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "engine/forward_runner.h"
#include "util/thread_pool.h"

namespace hs {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    default: return "";
  }
}

struct Engine::Sequence {
  int64_t id;
  GenerationRequest req;
  TokenCallback cb;
  Sampler sampler;
  std::vector<int32_t> tokens;  // prompt, then output
  size_t n_prompt;
  int32_t n_computed = 0;  // tokens whose K/V are in the cache
  bool holds_kv = false;   // has pages reserved or committed
  std::optional<IncrementalDetokenizer> detok;
  StopStringFilter stops;
  bool done = false;
  bool awaiting = false;    // a launched step samples its next token (not collected yet)
  int32_t flight_chunk = 0; // ... as this chunk of that step
  int launched = 0;         // launched steps not collected that compute some of its tokens

  Sequence(int64_t id_, GenerationRequest r, TokenCallback c, const Tokenizer* tok)
      : id(id_), req(std::move(r)), cb(std::move(c)), sampler(req.sampling), tokens(req.prompt),
        n_prompt(req.prompt.size()), stops(req.stop) {
    if (tok) detok.emplace(*tok);
  }
  int n_output() const { return static_cast<int>(tokens.size() - n_prompt); }
};

Engine::Engine(std::unique_ptr<Backend> backend, std::shared_ptr<const Tokenizer> tokenizer, EngineOptions options)
    : backend_(std::move(backend)),
      tokenizer_(std::move(tokenizer)),
      options_(std::move(options)),
      scheduler_(SchedulerOptions{options_.max_batch_tokens, options_.max_seqs}) {
  const ModelConfig& c = backend_->config();
  ShardPlan plan = options_.plan ? *options_.plan : dense_plan(c.n_layers, c.n_kv_heads);
  plan.validate_for(c);
  const int64_t page_bytes = backend_->page_bytes(plan.block_size());
  const int64_t n_pages = std::min<int64_t>(options_.kv_bytes / page_bytes, INT32_MAX);
  if (n_pages < static_cast<int64_t>(c.n_layers) * c.n_kv_heads)
    throw std::invalid_argument("KV memory of " + std::to_string(options_.kv_bytes) +
                                " bytes holds fewer pages than one block per head needs (" +
                                std::to_string(static_cast<int64_t>(c.n_layers) * c.n_kv_heads) + " pages of " +
                                std::to_string(page_bytes) + " bytes)");
  backend_->configure_kv(plan, static_cast<int32_t>(n_pages));
  kv_ = std::make_unique<PagedKvCache>(c, std::move(plan), static_cast<int32_t>(n_pages));
}

Engine::~Engine() = default;

int64_t Engine::submit(GenerationRequest req, TokenCallback on_event) {
  const ModelConfig& c = backend_->config();
  if (req.prompt.empty()) throw std::invalid_argument("the prompt is empty");
  for (int32_t t : req.prompt)
    if (t < 0 || t >= c.vocab_size)
      throw std::invalid_argument("prompt token id " + std::to_string(t) + " is outside the vocabulary (size " +
                                  std::to_string(c.vocab_size) + ")");
  if (req.max_tokens < 1) throw std::invalid_argument("max_tokens must be at least 1");
  const int64_t need = static_cast<int64_t>(req.prompt.size()) + req.max_tokens;
  if (need > c.context_length)
    throw std::invalid_argument("the prompt (" + std::to_string(req.prompt.size()) + " tokens) plus max_tokens (" +
                                std::to_string(req.max_tokens) + ") exceeds the context length (" +
                                std::to_string(c.context_length) + ")");
  // A sequence must fit the pool on its own, with room for one prefill chunk's blocks.
  const int64_t heads = static_cast<int64_t>(c.n_layers) * c.n_kv_heads;
  const int64_t chunk_blocks = options_.max_batch_tokens / kv_->plan().block_size() + 2;
  const int64_t pages = PagedKvCache::pages_for_length(c, kv_->plan(), need) + chunk_blocks * heads;
  if (pages > kv_->pool().capacity())
    throw std::invalid_argument("the request needs up to " + std::to_string(pages) + " KV pages but the cache holds " +
                                std::to_string(kv_->pool().capacity()));
  req.sampling.validate(c.vocab_size);
  const int64_t id = next_id_++;
  seqs_.push_back(std::make_unique<Sequence>(id, std::move(req), std::move(on_event), tokenizer_.get()));
  return id;
}

void Engine::cancel(int64_t seq_id) {
  for (auto& s : seqs_)
    if (s->id == seq_id && !s->done) finish(*s, FinishReason::Cancelled);
}

bool Engine::idle() const { return seqs_.empty(); }

int Engine::running() const {
  int n = 0;
  for (const auto& s : seqs_) n += !s->done && s->holds_kv;
  return n;
}

int Engine::waiting() const {
  int n = 0;
  for (const auto& s : seqs_) n += !s->done && !s->holds_kv;
  return n;
}

KvStats Engine::kv_stats() const {
  KvStats st;
  st.pages_total = kv_->pool().capacity();
  st.pages_used = kv_->pool().used_pages();
  st.page_bytes = backend_->page_bytes(kv_->plan().block_size());
  st.pages_dense = kv_->pages_in_use(HeadKind::Dense);
  st.pages_strided = kv_->pages_in_use(HeadKind::Strided);
  st.pages_streaming = kv_->pages_in_use(HeadKind::Streaming);
  return st;
}

void Engine::finish(Sequence& s, FinishReason reason) {
  s.done = true;
  TokenEvent ev;
  ev.seq_id = s.id;
  ev.finish = reason;
  if (reason != FinishReason::Cancelled) {
    if (s.detok) ev.text = s.stops.push(s.detok->flush());
    ev.text += s.stops.flush();
  }
  kv_->release(s.id);
  s.holds_kv = false;
  if (s.cb) s.cb(ev);
}

// Log-softmax of the chosen token and the k best, from the logits the sampler chose from.
static void fill_logprobs(const std::vector<float>& logits, int32_t token, int k, TokenEvent& ev) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - mx));
  const float log_z = mx + static_cast<float>(std::log(sum));
  ev.logprob = logits[token] - log_z;
  if (k <= 0) return;
  std::vector<int32_t> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int>(k, static_cast<int>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  for (int i = 0; i < k; ++i) ev.top_logprobs.emplace_back(idx[i], logits[idx[i]] - log_z);
}

void Engine::emit_token(Sequence& s, int32_t token) {
  s.tokens.push_back(token);
  TokenEvent ev;
  ev.seq_id = s.id;
  ev.token = token;
  if (s.req.logprobs >= 0) fill_logprobs(s.sampler.last_logits(), token, s.req.logprobs, ev);
  const bool eos = tokenizer_ && !s.req.ignore_eos && tokenizer_->is_end_of_generation(token);
  if (s.detok && !eos) ev.text = s.stops.push(s.detok->push(token));
  if (s.cb) s.cb(ev);
  if (eos || s.stops.matched()) {
    finish(s, FinishReason::Stop);
  } else if (s.n_output() >= s.req.max_tokens) {
    finish(s, FinishReason::Length);
  }
}

bool Engine::overlap_allowed() const {
  if (!backend_->overlaps_steps() || !backend_->samples_tokens()) return false;
  for (const auto& s : seqs_) {
    const SamplingParams& p = s->req.sampling;
    if (!s->done && (s->req.logprobs >= 0 || p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
                     p.frequency_penalty != 0.0f))
      return false;
  }
  return true;
}

void Engine::collect_in_flight() {
  InFlight f = std::move(*in_flight_);
  in_flight_.reset();
  Logits& out = logits_[f.logits];
  backend_->collect(out);
  for (Sequence* s : f.seqs) --s->launched;
  for (size_t c : f.ready) {
    Sequence& s = *f.seqs[c];
    s.awaiting = false;
    if (s.done) continue;  // stopped at the step before: its token here is dropped
    const int32_t token = out.sampled.empty() ? -1 : out.sampled[c];
    if (token < 0) throw std::logic_error("a step launched in flight came back without a sampled token");
    emit_token(s, token);
  }
}

bool Engine::step() {
  seqs_.erase(std::remove_if(seqs_.begin(), seqs_.end(), [](const auto& s) { return s->done && s->launched == 0; }),
              seqs_.end());
  const bool overlap = overlap_allowed();
  if (!overlap && in_flight_) collect_in_flight();  // the step below samples on the host or with penalties

  // A sequence awaiting a token counts it as its next one (not yet computed); one whose awaited
  // token is its last waits for it.
  std::vector<SchedEntry> entries;
  std::vector<Sequence*> live;
  for (const auto& sp : seqs_) {
    Sequence& s = *sp;
    if (s.done || (s.awaiting && s.n_output() + 1 >= s.req.max_tokens)) continue;
    const int32_t pending = static_cast<int32_t>(s.tokens.size()) + s.awaiting - s.n_computed;
    entries.push_back({s.id, pending, pending == 1 && s.n_computed >= static_cast<int32_t>(s.n_prompt), s.holds_kv});
    live.push_back(&s);
  }
  if (entries.empty()) {
    if (!in_flight_) return false;
    collect_in_flight();
    return true;
  }
  const SchedDecision decision = scheduler_.schedule(entries, *kv_);
  for (size_t v : decision.preempted) {  // recomputed from their tokens when their turn comes
    live[v]->holds_kv = false;
    live[v]->n_computed = 0;
    ++preemptions_;
  }
  if (decision.chunks.empty()) {
    // Sequences awaiting their last token hold pages the scheduler may not take: they free them
    // once the step in flight is collected.
    if (in_flight_) {
      collect_in_flight();
      return true;
    }
    // The oldest sequence can always preempt the newer ones, and submit() checked that each
    // fits alone; getting here means that invariant broke.
    throw std::logic_error("no sequence could be scheduled: the KV pool cannot hold the oldest one");
  }
  struct Planned {
    Sequence* seq;
    int32_t n;
  };
  std::vector<Planned> plan;
  for (const auto& c : decision.chunks) {
    live[c.entry]->holds_kv = true;
    plan.push_back({live[c.entry], c.n});
  }

  // A chunk that completes its sequence's pending tokens is followed by a sample: on the backend
  // when it can (and the request wants no log-probabilities, which need the logits here).
  Batch batch;
  specs_.clear();
  specs_.reserve(plan.size());  // chunks point into it
  std::vector<size_t> ready;
  for (size_t i = 0; i < plan.size(); ++i) {
    Sequence& s = *plan[i].seq;
    SeqChunk ch;
    ch.seq_id = s.id;
    ch.pos0 = s.n_computed;
    ch.tokens.resize(plan[i].n);
    for (int32_t t = 0; t < plan[i].n; ++t) {
      const size_t at = static_cast<size_t>(s.n_computed + t);
      ch.tokens[t] = at < s.tokens.size() ? s.tokens[at] : Backend::kFromPreviousStep - s.flight_chunk;
    }
    if (s.n_computed + plan[i].n >= static_cast<int32_t>(s.tokens.size()) + s.awaiting) {
      ready.push_back(i);
      if (backend_->samples_tokens() && s.req.logprobs < 0) {
        specs_.push_back({&s.req.sampling, s.sampler.next_random(), &s.tokens, s.n_prompt});
        ch.sample = &specs_.back();
      }
    } else {
      ch.skip_logits = true;  // prefill goes on
    }
    batch.chunks.push_back(std::move(ch));
  }

  // Overlapped: launch this step, then report the one before (the GPU runs this one meanwhile).
  Logits& logits = logits_[next_logits_];
  run_step(*backend_, *kv_, batch, meta_, logits, /*in_flight=*/overlap);
  for (const Planned& p : plan) p.seq->n_computed += p.n;
  if (overlap) {
    InFlight f;
    for (const Planned& p : plan) {
      ++p.seq->launched;
      f.seqs.push_back(p.seq);
    }
    f.ready = ready;
    f.logits = next_logits_;
    next_logits_ ^= 1;
    if (in_flight_) collect_in_flight();
    for (size_t c : ready) {
      plan[c].seq->awaiting = true;
      plan[c].seq->flight_chunk = static_cast<int32_t>(c);
    }
    in_flight_ = std::move(f);
    return true;
  }

  // The rest sample on the host, in parallel (each sequence has its own sampler and random
  // stream, so the result does not depend on the threads); then tokens are emitted in order.
  sampled_.resize(ready.size());
  const bool host_samples = std::any_of(ready.begin(), ready.end(), [&](size_t i) {
    return logits.sampled.empty() || logits.sampled[i] < 0;
  });
  const int64_t n_ready = static_cast<int64_t>(ready.size());
  ThreadPool::global().parallel_for(n_ready, host_samples ? 4 : n_ready, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      Sequence& s = *plan[ready[k]].seq;
      const int32_t on_backend = logits.sampled.empty() ? -1 : logits.sampled[ready[k]];
      sampled_[k] = on_backend >= 0 ? on_backend
                                    : s.sampler.sample(logits.last_row_of(ready[k], batch), logits.vocab, s.tokens,
                                                       s.n_prompt);
    }
  });
  for (size_t k = 0; k < ready.size(); ++k) emit_token(*plan[ready[k]].seq, sampled_[k]);
  return true;
}

void Engine::run_until_idle() {
  while (step()) {
  }
}

}  // namespace hs
