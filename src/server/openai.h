// The OpenAI request side: JSON bodies of /v1/completions and /v1/chat/completions become the
// GenerationRequests to run, after every check a client can fail (each throws ApiError with a
// status and the field at fault; see server/errors.h). Also llama.cpp's /tokenize, /detokenize
// and /apply-template.
//
// Conventions, and where they differ from OpenAI's:
//   - null means "not given" for every field; unknown fields are ignored (clients send extras).
//   - "model" may be left out (the served model); a name that is not served is 404.
//   - prompt: a string, an array of strings (one choice per prompt per n), an array of token
//     ids, or an array of arrays of token ids. Text is tokenized with the model's default BOS
//     and with special-token text parsed (as llama.cpp and vLLM do).
//   - max_tokens (or max_completion_tokens): default 16 for completions, the rest of the context
//     for chat; prompt + max_tokens over the context length is 400 context_length_exceeded.
//   - temperature [0, 2], top_p (0, 1], top_k >= -1 (0 and -1: off), min_p [0, 1],
//     presence/frequency_penalty [-2, 2], repetition_penalty (0, 10], n in [1, kMaxChoices],
//     at most kMaxStops non-empty stop strings, logprobs / top_logprobs in [0, kMaxTopLogprobs],
//     logit_bias keys token ids (as strings) and values in [-100, 100].
//   - seed: with n > 1, choice j of each prompt samples with seed + j, so choice 0 equals the
//     same request with n = 1.
//   - echo, suffix, best_of > n, tools, functions and response_format other than text are
//     rejected with 400 (not supported) rather than silently ignored.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "model/chat_template.h"
#include "server/errors.h"

namespace hs::server {

constexpr int kMaxChoices = 16;      // n
constexpr int kMaxPrompts = 64;      // prompts in one completions request
constexpr int kMaxStops = 16;        // stop strings
constexpr int kMaxTopLogprobs = 20;  // logprobs (completions) and top_logprobs (chat)

// What the API layer needs from the served model: plain functions, so that tests can stand in a
// fake model without loading one.
struct ModelView {
  std::string id;                    // the name in responses and /v1/models
  std::vector<std::string> aliases;  // other names accepted as "model"
  int64_t created = 0;               // unix time, for /v1/models
  int context_length = 0;
  int vocab_size = 0;
  // add_special: BOS when the tokenizer adds one by default; parse_special: the text of special
  // tokens ("<|im_start|>") becomes those tokens.
  std::function<std::vector<int32_t>(const std::string& text, bool add_special, bool parse_special)> tokenize;
  std::function<std::string(const std::vector<int32_t>&)> detokenize;
  // The prompt text of a conversation, ending with the assistant's turn opened. Throws
  // std::exception with a message when the template cannot render it.
  std::function<std::string(const std::vector<ChatMessage>&)> render_chat;
  // The raw bytes of one token, special tokens shown as their text (for logprobs).
  std::function<std::string(int32_t)> token_bytes;

  bool accepts(const std::string& name) const;
};

enum class ApiKind { Completion, Chat };

struct ApiRequest {
  ApiKind kind = ApiKind::Completion;
  std::string model;                          // as the client named it ("" when left out)
  std::vector<std::vector<int32_t>> prompts;  // token ids per prompt (chat: one)
  int n = 1;                                  // choices per prompt
  GenerationRequest params;                   // all but the prompt; params.sampling.seed is the base seed
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // report the chosen tokens' log-probabilities
  int top_logprobs = 0;        // and this many alternatives per token

  int num_choices() const { return static_cast<int>(prompts.size()) * n; }
  int prompt_tokens() const;  // summed over the prompts, once each whatever n is
  // One GenerationRequest per choice, prompt-major (choice index = prompt * n + j).
  std::vector<GenerationRequest> sequences() const;
};

ApiRequest parse_completion_request(const std::string& body, const ModelView& model);
ApiRequest parse_chat_request(const std::string& body, const ModelView& model);

// The messages of a chat request ("messages" in `body`), checked; throws ApiError.
std::vector<ChatMessage> parse_messages(const nlohmann::json& body);

// POST /tokenize {"content" | "prompt": text, "add_special": false, "parse_special": true,
//                 "with_pieces": false} -> {"tokens": [ids] | [{"id", "piece"}]}
nlohmann::json tokenize_endpoint(const std::string& body, const ModelView& model);
// POST /detokenize {"tokens": [ids]} -> {"content": text}
nlohmann::json detokenize_endpoint(const std::string& body, const ModelView& model);
// POST /apply-template {"messages": [...]} -> {"prompt": text}
nlohmann::json apply_template_endpoint(const std::string& body, const ModelView& model);

// The body as a JSON object, or ApiError 400.
nlohmann::json parse_body(const std::string& body);

}  // namespace hs::server
