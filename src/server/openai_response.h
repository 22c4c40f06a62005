// The OpenAI response side: whole responses and stream chunks for completions and chat
// completions, in OpenAI's schema (id, object, created, model, choices, usage), with logprobs in
// each endpoint's own format:
//   completions  "logprobs": {"tokens": [...], "token_logprobs": [...],
//                             "top_logprobs": [{token: logprob}], "text_offset": [...]}
//   chat         "logprobs": {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}
// Token strings are the token's bytes (special tokens as their text); bytes that are only part
// of a UTF-8 character show as U+FFFD in the string, and exactly in chat's "bytes".
// text_offset counts characters (code points) of the completion text before each token.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "server/openai.h"

namespace hs::server {

struct ResponseMeta {
  ApiKind kind = ApiKind::Completion;
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};
// A fresh id and the current time.
ResponseMeta make_response_meta(ApiKind kind, std::string model);

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // best first
  int text_offset = 0;                         // completions: characters before this token
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// One choice's output, accumulated from the engine's events.
struct ChoiceOutput {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  FinishReason finish = FinishReason::None;
  int n_tokens = 0;
  int chars = 0;  // characters of the tokens' bytes so far (for text_offset)

  // Counts one token event and, when keep_logprobs, records its logprobs (and text_offset).
  void add_token(const TokenEvent& ev, bool keep_logprobs, const ModelView& model);
};

// "stop", "length", or "cancelled" (only seen when a request is cut short).
const char* finish_reason_json(FinishReason r);

nlohmann::json usage_json(const Usage& u);
nlohmann::json completion_logprobs_json(const std::vector<TokenLogprob>& lps, const ModelView& model);
nlohmann::json chat_logprobs_json(const std::vector<TokenLogprob>& lps, const ModelView& model);

// Non-streaming responses; choices are in choice-index order.
nlohmann::json completion_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                                   const Usage& usage, bool logprobs, const ModelView& model);
nlohmann::json chat_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices, const Usage& usage,
                             bool logprobs, const ModelView& model);

// Stream chunks. `logprobs` may be null (none); `finish` None gives "finish_reason": null.
// with_usage_field: "usage": null is added (OpenAI does so when include_usage is on).
nlohmann::json completion_chunk(const ResponseMeta& meta, int index, const std::string& text,
                                const std::vector<TokenLogprob>* logprobs, FinishReason finish, bool with_usage_field,
                                const ModelView& model);
// delta: {"role": "assistant", "content": ""} first, then {"content": text}, {} at the end.
nlohmann::json chat_chunk(const ResponseMeta& meta, int index, nlohmann::json delta,
                          const std::vector<TokenLogprob>* logprobs, FinishReason finish, bool with_usage_field,
                          const ModelView& model);
// The last chunk with stream_options.include_usage: "choices": [] and the usage.
nlohmann::json usage_chunk(const ResponseMeta& meta, const Usage& usage);

// A token's text for JSON: its bytes, with U+FFFD for bytes that do not form valid UTF-8.
std::string token_display(const std::string& bytes);
// Characters (code points) in a byte string: the bytes that do not continue a character.
int count_chars(const std::string& bytes);

}  // namespace hs::server
