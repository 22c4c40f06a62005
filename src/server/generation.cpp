#include "server/generation.h"

#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "server/connection_watch.h"
#include "server/errors.h"
#include "server/openai_response.h"
#include "server/sse.h"

namespace hs::server {

using nlohmann::json;

namespace {

ApiError error_for(const ServiceEvent& ev) {
  switch (ev.error) {
    case ServiceError::Timeout: return ApiError(408, ev.message, "", "timeout");
    case ServiceError::Rejected: return ApiError(400, ev.message, "", "invalid_request");
    case ServiceError::Shutdown: return ApiError(503, ev.message, "", "shutting_down");
    default: return ApiError(500, ev.message.empty() ? "internal error" : ev.message, "", "internal_error");
  }
}

// One request's progress: the choices' outputs as events arrive, and the SSE text they make.
class Generation {
 public:
  Generation(ApiRequest req, std::shared_ptr<RequestHandle> handle, GenerationContext ctx, ConnectionWatch watch)
      : req_(std::move(req)), handle_(std::move(handle)), ctx_(std::move(ctx)), watch_(watch),
        meta_(make_response_meta(req_.kind, req_.model.empty() ? ctx_.model->id : req_.model)),
        outputs_(req_.num_choices()) {}

  // The next event within the poll interval. nullopt when none came; then client_gone() tells
  // whether the client left (the request is cancelled then).
  std::optional<ServiceEvent> next() {
    std::optional<ServiceEvent> ev = handle_->next(ctx_.poll);
    if (!ev && watch_.peer_closed()) {
      gone_ = true;
      handle_->cancel();
    }
    return ev;
  }
  bool client_gone() const { return gone_; }
  bool done() const { return handle_->done(); }
  void cancel() { handle_->cancel(); }

  // Non-streaming: takes events until every choice ended; false when the client left first.
  bool collect() {
    while (!handle_->done()) {
      if (std::optional<ServiceEvent> ev = next())
        apply(*ev, nullptr);
      else if (gone_)
        return false;
    }
    return true;
  }

  const std::optional<ApiError>& error() const { return error_; }

  json response() const {
    return req_.kind == ApiKind::Chat ? chat_response(meta_, outputs_, usage(), req_.logprobs, *ctx_.model)
                                      : completion_response(meta_, outputs_, usage(), req_.logprobs, *ctx_.model);
  }

  // Streaming: an event that came before the stream started, to be sent first.
  void hold(ServiceEvent ev) { held_.push_back(std::move(ev)); }

  // The chunked content provider's body: writes what has arrived, waits up to the poll interval
  // for more, ends the stream after the last choice. False stops the stream (client gone).
  bool pump(httplib::DataSink& sink) {
    std::string out;
    if (!started_) {
      started_ = true;
      if (req_.kind == ApiKind::Chat)
        for (int i = 0; i < req_.num_choices(); ++i)
          out += sse_data(chat_chunk(meta_, i, {{"role", "assistant"}, {"content", ""}}, nullptr, FinishReason::None,
                                     req_.include_usage, *ctx_.model));
      for (const ServiceEvent& ev : held_) apply(ev, &out);
      held_.clear();
    }
    if (!handle_->done()) {
      if (std::optional<ServiceEvent> ev = next()) {
        apply(*ev, &out);
        // Send everything that is ready in one write.
        while (!handle_->done()) {
          std::optional<ServiceEvent> more = handle_->next(std::chrono::milliseconds(0));
          if (!more) break;
          apply(*more, &out);
        }
      } else if (gone_) {
        return false;
      }
    }
    const bool finished = handle_->done();
    if (finished) {
      if (req_.include_usage) out += sse_data(usage_chunk(meta_, usage()));
      out += sse_done();
    }
    if (!out.empty() && !sink.write(out.data(), out.size())) {
      handle_->cancel();  // the client is gone
      return false;
    }
    if (finished) sink.done();
    return true;
  }

 private:
  Usage usage() const {
    Usage u;
    u.prompt_tokens = req_.prompt_tokens();
    for (const ChoiceOutput& o : outputs_) u.completion_tokens += o.n_tokens;
    return u;
  }

  json chunk(int index, const std::string& text, const std::vector<TokenLogprob>* lps, FinishReason finish) const {
    if (req_.kind == ApiKind::Completion)
      return completion_chunk(meta_, index, text, lps, finish, req_.include_usage, *ctx_.model);
    json delta = json::object();
    if (!text.empty() || finish == FinishReason::None) delta["content"] = text;
    return chat_chunk(meta_, index, delta, lps, finish, req_.include_usage, *ctx_.model);
  }

  // Folds one event into the outputs; with `sse`, appends the chunks it makes.
  void apply(const ServiceEvent& ev, std::string* sse) {
    ChoiceOutput& out = outputs_.at(ev.index);
    switch (ev.kind) {
      case ServiceEvent::Kind::Admitted: break;
      case ServiceEvent::Kind::Token: {
        out.add_token(ev.token, req_.logprobs, *ctx_.model);
        if (!sse) {
          out.text += ev.token.text;
          break;
        }
        if (ev.token.text.empty() && !req_.logprobs) break;  // nothing to say yet (held bytes)
        std::vector<TokenLogprob> one;
        if (req_.logprobs) one.push_back(out.logprobs.back());
        out.logprobs.clear();  // a stream sends each token's logprobs once; keep nothing
        *sse += sse_data(chunk(ev.index, ev.token.text, req_.logprobs ? &one : nullptr, FinishReason::None));
        break;
      }
      case ServiceEvent::Kind::Finished: {
        out.finish = ev.token.finish;
        if (!sse) {
          out.text += ev.token.text;
          break;
        }
        if (ev.token.finish == FinishReason::Cancelled) break;  // cut short by a failure reported elsewhere
        if (req_.kind == ApiKind::Chat && !ev.token.text.empty())
          *sse += sse_data(chunk(ev.index, ev.token.text, nullptr, FinishReason::None));
        *sse += sse_data(chunk(ev.index, req_.kind == ApiKind::Chat ? "" : ev.token.text, nullptr, ev.token.finish));
        break;
      }
      case ServiceEvent::Kind::Failed: {
        const bool first = !error_;
        if (first) error_ = error_for(ev);
        handle_->cancel();  // the request as a whole has failed: stop its other choices
        if (sse && first) *sse += sse_data(error_body(*error_));
        break;
      }
    }
  }

  ApiRequest req_;
  std::shared_ptr<RequestHandle> handle_;
  GenerationContext ctx_;
  ConnectionWatch watch_;
  ResponseMeta meta_;
  std::vector<ChoiceOutput> outputs_;
  std::vector<ServiceEvent> held_;
  std::optional<ApiError> error_;
  bool started_ = false;
  bool gone_ = false;
};

// 499 (nginx's "client closed request"): nobody reads it, but the metrics and logs show it.
constexpr int kClientClosed = 499;

}  // namespace

void serve_generation(ApiKind kind, const httplib::Request& req, httplib::Response& res, GenerationContext ctx) {
  const ModelView& model = *ctx.model;
  ApiRequest api = kind == ApiKind::Chat ? parse_chat_request(req.body, model) : parse_completion_request(req.body, model);
  const bool stream = api.stream;

  std::shared_ptr<RequestHandle> handle;
  try {
    handle = ctx.service->submit(api.sequences());
  } catch (const QueueFull& e) {
    ApiError err(429, e.what(), "", "queue_full");
    err.retry_after_s = e.retry_after_s;
    throw err;
  } catch (const Unavailable& e) {
    throw ApiError(503, e.what(), "", "unavailable");
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what(), "n", "too_many_sequences");
  }

  auto gen = std::make_shared<Generation>(std::move(api), std::move(handle), std::move(ctx),
                                          ConnectionWatch(req.remote_addr, req.remote_port, req.local_port));
  if (!stream) {
    if (!gen->collect()) {
      res.status = kClientClosed;
      return;
    }
    if (gen->error()) throw *gen->error();
    res.status = 200;
    res.set_content(dump_json(gen->response()), "application/json");
    return;
  }

  // Hold the status line until the first event: a request the engine refuses gets its 4xx.
  for (;;) {
    std::optional<ServiceEvent> ev = gen->next();
    if (ev) {
      if (ev->kind == ServiceEvent::Kind::Failed) throw error_for(*ev);
      gen->hold(std::move(*ev));
      break;
    }
    if (gen->client_gone()) {
      res.status = kClientClosed;
      return;
    }
  }
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream", [gen](size_t, httplib::DataSink& sink) { return gen->pump(sink); },
      [gen](bool success) {
        if (!success) gen->cancel();
      });
}

}  // namespace hs::server
