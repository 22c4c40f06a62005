// The HTTP layer's pure parts: request parsing and validation (with a fake model), response and
// stream chunk building, SSE framing, Prometheus text, and the serve settings.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/serve_config.h"
#include "engine/service_stats.h"
#include "server/errors.h"
#include "server/metrics.h"
#include "server/model_view.h"
#include "server/openai.h"
#include "server/openai_response.h"
#include "server/sse.h"

namespace hs::server {
namespace {

using nlohmann::json;

// A model whose tokens are bytes: token id = byte + 1 (0 is BOS), vocabulary 300, context 64.
// Ids 257..299 are "special" tokens shown as <sN>.
ModelView fake_model() {
  ModelView m;
  m.id = "fake-model";
  m.aliases = {"models/fake.gguf"};
  m.context_length = 64;
  m.vocab_size = 300;
  m.tokenize = [](const std::string& text, bool add_special, bool) {
    std::vector<int32_t> ids;
    if (add_special) ids.push_back(0);
    for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 1);
    return ids;
  };
  m.detokenize = [](const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids)
      if (id >= 1 && id <= 256) s += static_cast<char>(id - 1);
    return s;
  };
  m.render_chat = [](const std::vector<ChatMessage>& msgs) {
    std::string s;
    for (const auto& msg : msgs) {
      if (msg.role == "tool") throw std::invalid_argument("this template has no tool role");
      s += msg.role + ":" + msg.content + "\n";
    }
    return s + "assistant:";
  };
  m.token_bytes = [](int32_t id) {
    if (id == 0) return std::string("<s>");
    if (id <= 256) return std::string(1, static_cast<char>(id - 1));
    return "<s" + std::to_string(id) + ">";
  };
  return m;
}

// ---- malformed requests ---------------------------------------------------------------------

struct Malformed {
  const char* name;
  ApiKind kind;
  std::string body;
  int status;
  const char* param;    // expected "param" ("" for none)
  const char* message;  // a part of the expected message
};

std::vector<Malformed> malformed_cases() {
  const ApiKind C = ApiKind::Completion, H = ApiKind::Chat;
  const std::string chat_ok = R"("messages": [{"role": "user", "content": "hi"}])";
  return {
      {"not json", C, "{oops", 400, "", "not valid JSON"},
      {"empty body", C, "", 400, "", "not valid JSON"},
      {"json array body", C, "[1, 2]", 400, "", "must be a JSON object"},
      {"json string body", H, "\"hello\"", 400, "", "must be a JSON object"},
      {"missing prompt", C, R"({"max_tokens": 3})", 400, "prompt", "prompt is required"},
      {"prompt is a number", C, R"({"prompt": 42})", 400, "prompt", "prompt must be"},
      {"prompt is an object", C, R"({"prompt": {"text": "x"}})", 400, "prompt", "prompt must be"},
      {"prompt empty array", C, R"({"prompt": []})", 400, "prompt", "empty array"},
      {"prompt with no tokens", C, R"({"prompt": [[]]})", 400, "prompt", "prompt is empty"},
      {"prompt mixed array", C, R"({"prompt": ["a", 5]})", 400, "prompt", "prompt must be"},
      {"prompt token out of vocab", C, R"({"prompt": [1, 2, 300]})", 400, "prompt", "outside the vocabulary"},
      {"prompt negative token", C, R"({"prompt": [[1, -4]]})", 400, "prompt", "outside the vocabulary"},
      {"prompt fractional token", C, R"({"prompt": [1.5]})", 400, "prompt", "integer token ids"},
      {"unknown model", C, R"({"model": "gpt-9", "prompt": "x"})", 404, "model", "does not exist"},
      {"model not a string", C, R"({"model": 7, "prompt": "x"})", 400, "model", "must be a string"},
      {"max_tokens zero", C, R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens", "at least 1"},
      {"max_tokens string", C, R"({"prompt": "x", "max_tokens": "10"})", 400, "max_tokens", "must be an integer"},
      {"max_tokens fractional", C, R"({"prompt": "x", "max_tokens": 2.5})", 400, "max_tokens", "must be an integer"},
      {"over the context", C, R"({"prompt": "0123456789", "max_tokens": 60})", 400, "max_tokens",
       "context length is 64"},
      {"prompt alone over the context", C, "{\"prompt\": \"" + std::string(70, 'a') + "\"}", 400, "prompt",
       "context length is 64"},
      {"temperature negative", C, R"({"prompt": "x", "temperature": -0.5})", 400, "temperature", "in [0, 2]"},
      {"temperature too high", C, R"({"prompt": "x", "temperature": 2.5})", 400, "temperature", "in [0, 2]"},
      {"temperature string", C, R"({"prompt": "x", "temperature": "hot"})", 400, "temperature", "must be a number"},
      {"top_p zero", C, R"({"prompt": "x", "top_p": 0})", 400, "top_p", "(0, 1]"},
      {"top_p above one", C, R"({"prompt": "x", "top_p": 1.01})", 400, "top_p", "(0, 1]"},
      {"top_k fractional", C, R"({"prompt": "x", "top_k": 3.5})", 400, "top_k", "must be an integer"},
      {"top_k below -1", C, R"({"prompt": "x", "top_k": -2})", 400, "top_k", "must be in"},
      {"min_p above one", C, R"({"prompt": "x", "min_p": 1.5})", 400, "min_p", "[0, 1]"},
      {"presence_penalty out of range", C, R"({"prompt": "x", "presence_penalty": 3})", 400, "presence_penalty",
       "[-2, 2]"},
      {"frequency_penalty out of range", C, R"({"prompt": "x", "frequency_penalty": -2.5})", 400,
       "frequency_penalty", "[-2, 2]"},
      {"repetition_penalty zero", C, R"({"prompt": "x", "repetition_penalty": 0})", 400, "repetition_penalty",
       "(0, 10]"},
      {"n zero", C, R"({"prompt": "x", "n": 0})", 400, "n", "must be in [1, 16]"},
      {"n too many", C, R"({"prompt": "x", "n": 17})", 400, "n", "must be in [1, 16]"},
      {"seed string", C, R"({"prompt": "x", "seed": "abc"})", 400, "seed", "must be an integer"},
      {"stop number", C, R"({"prompt": "x", "stop": 5})", 400, "stop", "string or an array of strings"},
      {"stop array with number", C, R"({"prompt": "x", "stop": ["a", 1]})", 400, "stop", "array of strings"},
      {"stop empty string", C, R"({"prompt": "x", "stop": [""]})", 400, "stop", "must not be empty"},
      {"too many stops", C, R"({"prompt": "x", "stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]})",
       400, "stop", "at most 16"},
      {"stream not bool", C, R"({"prompt": "x", "stream": "yes"})", 400, "stream", "must be a boolean"},
      {"stream_options without stream", C, R"({"prompt": "x", "stream_options": {"include_usage": true}})", 400,
       "stream_options", "only allowed when stream is true"},
      {"stream_options not object", C, R"({"prompt": "x", "stream": true, "stream_options": true})", 400,
       "stream_options", "must be an object"},
      {"include_usage not bool", C, R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": 1}})",
       400, "include_usage", "must be a boolean"},
      {"logprobs too many", C, R"({"prompt": "x", "logprobs": 21})", 400, "logprobs", "[0, 20]"},
      {"logit_bias not object", C, R"({"prompt": "x", "logit_bias": [1]})", 400, "logit_bias", "must be an object"},
      {"logit_bias bad key", C, R"({"prompt": "x", "logit_bias": {"abc": 1}})", 400, "logit_bias", "token ids"},
      {"logit_bias key out of vocab", C, R"({"prompt": "x", "logit_bias": {"5000": 1}})", 400, "logit_bias",
       "outside the vocabulary"},
      {"logit_bias value too big", C, R"({"prompt": "x", "logit_bias": {"5": 101}})", 400, "logit_bias",
       "[-100, 100]"},
      {"logit_bias value string", C, R"({"prompt": "x", "logit_bias": {"5": "up"}})", 400, "logit_bias",
       "must be numbers"},
      {"ignore_eos not bool", C, R"({"prompt": "x", "ignore_eos": "true"})", 400, "ignore_eos", "must be a boolean"},
      {"echo", C, R"({"prompt": "x", "echo": true})", 400, "echo", "not supported"},
      {"suffix", C, R"({"prompt": "x", "suffix": "end"})", 400, "suffix", "not supported"},
      {"best_of", C, R"({"prompt": "x", "best_of": 3})", 400, "best_of", "not supported"},
      {"user not string", C, R"({"prompt": "x", "user": 7})", 400, "user", "must be a string"},
      {"missing messages", H, R"({"max_tokens": 3})", 400, "messages", "messages is required"},
      {"messages not array", H, R"({"messages": "hi"})", 400, "messages", "must be an array"},
      {"messages empty", H, R"({"messages": []})", 400, "messages", "must not be empty"},
      {"message not object", H, R"({"messages": ["hi"]})", 400, "messages", "must be an object"},
      {"message without role", H, R"({"messages": [{"content": "hi"}]})", 400, "messages", "role is required"},
      {"message bad role", H, R"({"messages": [{"role": "wizard", "content": "hi"}]})", 400, "messages",
       "role must be"},
      {"message content number", H, R"({"messages": [{"role": "user", "content": 5}]})", 400, "messages",
       "content must be"},
      {"message without content", H, R"({"messages": [{"role": "user"}]})", 400, "messages", "content is required"},
      {"message image part", H,
       R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})", 400,
       "messages", "only text parts"},
      {"template refuses", H, R"({"messages": [{"role": "tool", "content": "x"}]})", 400, "messages",
       "chat template cannot render"},
      {"top_logprobs without logprobs", H, "{" + chat_ok + R"(, "top_logprobs": 2})", 400, "top_logprobs",
       "needs logprobs"},
      {"chat logprobs not bool", H, "{" + chat_ok + R"(, "logprobs": 3})", 400, "logprobs", "must be a boolean"},
      {"max_completion_tokens negative", H, "{" + chat_ok + R"(, "max_completion_tokens": -3})", 400,
       "max_completion_tokens", "at least 1"},
      {"tools", H, "{" + chat_ok + R"(, "tools": [{"type": "function"}]})", 400, "tools", "not supported"},
      {"response_format json", H, "{" + chat_ok + R"(, "response_format": {"type": "json_object"}})", 400,
       "response_format", "is supported"},
  };
}

TEST(OpenAiRequest, MalformedRequestsGetTheirStatusAndMessage) {
  const ModelView model = fake_model();
  const auto cases = malformed_cases();
  EXPECT_GE(cases.size(), 25u);
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    try {
      if (c.kind == ApiKind::Chat)
        parse_chat_request(c.body, model);
      else
        parse_completion_request(c.body, model);
      ADD_FAILURE() << "accepted: " << c.body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, c.status);
      EXPECT_EQ(e.param, c.param);
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << e.what();
      const json body = error_body(e);
      EXPECT_TRUE(body["error"]["message"].is_string());
      EXPECT_FALSE(body["error"]["type"].get<std::string>().empty());
    }
  }
}

TEST(OpenAiRequest, UserIdIsAcceptedAndUnused) {
  const ModelView model = fake_model();
  const ApiRequest plain = parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}]})", model);
  for (const char* user : {R"("u-1")", "null"}) {
    const ApiRequest r = parse_chat_request(
        std::string(R"({"messages": [{"role": "user", "content": "hi"}], "user": )") + user + "}", model);
    EXPECT_EQ(r.prompts, plain.prompts) << user;
  }
}

TEST(OpenAiRequest, PromptForms) {
  const ModelView model = fake_model();
  ApiRequest r = parse_completion_request(R"({"prompt": "ab"})", model);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0], (std::vector<int32_t>{0, 'a' + 1, 'b' + 1}));
  EXPECT_EQ(r.params.max_tokens, 16);  // OpenAI's default for completions
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.params.logprobs, -1);

  r = parse_completion_request(R"({"prompt": ["a", "bc"], "n": 2})", model);
  EXPECT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.num_choices(), 4);
  EXPECT_EQ(r.prompt_tokens(), 2 + 3);  // each prompt once, whatever n

  r = parse_completion_request(R"({"prompt": [5, 6, 7]})", model);
  EXPECT_EQ(r.prompts, (std::vector<std::vector<int32_t>>{{5, 6, 7}}));

  r = parse_completion_request(R"({"prompt": [[5], [6, 7.0]]})", model);
  EXPECT_EQ(r.prompts, (std::vector<std::vector<int32_t>>{{5}, {6, 7}}));

  r = parse_completion_request(R"({"prompt": "x", "model": "models/fake.gguf", "max_tokens": null})", model);
  EXPECT_EQ(r.model, "models/fake.gguf");
  EXPECT_EQ(r.params.max_tokens, 16);
}

TEST(OpenAiRequest, SamplingFieldsAndSeedsPerChoice) {
  const ModelView model = fake_model();
  const ApiRequest r = parse_completion_request(
      R"({"prompt": ["a", "b"], "n": 3, "seed": 100, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
          "min_p": 0.05, "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
          "stop": "\n", "ignore_eos": true, "logprobs": 3, "logit_bias": {"65": -100, "66": 5.5},
          "max_tokens": 7, "stream": true, "stream_options": {"include_usage": true}, "user": "ignored"})",
      model);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  const std::vector<GenerationRequest> seqs = r.sequences();
  ASSERT_EQ(seqs.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    const GenerationRequest& g = seqs[i];
    EXPECT_EQ(g.prompt, (std::vector<int32_t>{0, (i < 3 ? 'a' : 'b') + 1}));
    ASSERT_TRUE(g.sampling.seed);
    EXPECT_EQ(*g.sampling.seed, 100u + static_cast<uint64_t>(i % 3));  // choice j of each prompt: seed + j
    EXPECT_FLOAT_EQ(g.sampling.temperature, 0.7f);
    EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);
    EXPECT_EQ(g.sampling.top_k, 40);
    EXPECT_FLOAT_EQ(g.sampling.min_p, 0.05f);
    EXPECT_FLOAT_EQ(g.sampling.presence_penalty, 0.5f);
    EXPECT_FLOAT_EQ(g.sampling.frequency_penalty, -0.5f);
    EXPECT_FLOAT_EQ(g.sampling.repetition_penalty, 1.1f);
    EXPECT_EQ(g.stop, std::vector<std::string>{"\n"});
    EXPECT_TRUE(g.ignore_eos);
    EXPECT_EQ(g.logprobs, 3);
    EXPECT_EQ(g.max_tokens, 7);
    ASSERT_EQ(g.sampling.logit_bias.size(), 2u);
    g.sampling.validate(model.vocab_size);  // the engine's own check agrees
  }
}

TEST(OpenAiRequest, ChatRequest) {
  const ModelView model = fake_model();
  const ApiRequest r = parse_chat_request(
      R"({"model": "fake-model", "messages": [{"role": "developer", "content": "be brief"},
          {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
          {"role": "assistant", "content": null}, {"role": "user", "content": "go"}],
          "max_completion_tokens": 5, "max_tokens": 9, "logprobs": true, "top_logprobs": 2})",
      model);
  EXPECT_EQ(r.kind, ApiKind::Chat);
  const std::string text = "system:be brief\nuser:one\ntwo\nassistant:\nuser:go\nassistant:";
  EXPECT_EQ(r.prompts[0], model.tokenize(text, true, true));
  EXPECT_EQ(r.params.max_tokens, 5);  // max_completion_tokens wins
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.params.logprobs, 2);

  // Without max_tokens a chat may use the rest of the context.
  const ApiRequest d = parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}]})", model);
  EXPECT_EQ(d.params.max_tokens, 64 - static_cast<int>(d.prompts[0].size()));
}

TEST(OpenAiRequest, TokenizeEndpoints) {
  const ModelView model = fake_model();
  EXPECT_EQ(tokenize_endpoint(R"({"content": "ab"})", model)["tokens"], json({'a' + 1, 'b' + 1}));
  EXPECT_EQ(tokenize_endpoint(R"({"prompt": "a", "add_special": true})", model)["tokens"], json({0, 'a' + 1}));
  EXPECT_EQ(tokenize_endpoint(R"({"content": "a", "with_pieces": true})", model)["tokens"][0]["piece"], "a");
  EXPECT_EQ(detokenize_endpoint(R"({"tokens": [105, 106]})", model)["content"], "hi");
  EXPECT_EQ(apply_template_endpoint(R"({"messages": [{"role": "user", "content": "x"}]})", model)["prompt"],
            "user:x\nassistant:");
  auto status_of = [&](auto fn, const std::string& body) {
    try {
      fn(body, model);
    } catch (const ApiError& e) {
      return e.status;
    }
    return 200;
  };
  EXPECT_EQ(status_of(tokenize_endpoint, R"({"content": 5})"), 400);
  EXPECT_EQ(status_of(tokenize_endpoint, R"({})"), 400);
  EXPECT_EQ(status_of(detokenize_endpoint, R"({"tokens": "ab"})"), 400);
  EXPECT_EQ(status_of(detokenize_endpoint, R"({"tokens": [100000]})"), 400);
  EXPECT_EQ(status_of(apply_template_endpoint, R"({"messages": 1})"), 400);
}

// ---- responses ------------------------------------------------------------------------------

TokenEvent token_event(int32_t token, const std::string& text, float lp = -0.5f) {
  TokenEvent ev;
  ev.token = token;
  ev.text = text;
  ev.logprob = lp;
  ev.top_logprobs = {{token, lp}, {'z' + 1, -2.0f}};
  return ev;
}

TEST(OpenAiResponse, CompletionWithLogprobs) {
  const ModelView model = fake_model();
  ChoiceOutput out;
  for (const char* piece : {"H", "i", "!"}) {
    out.add_token(token_event(static_cast<unsigned char>(piece[0]) + 1, piece), true, model);
    out.text += piece;
  }
  out.finish = FinishReason::Length;
  const ResponseMeta meta = make_response_meta(ApiKind::Completion, "fake-model");
  EXPECT_EQ(meta.id.rfind("cmpl-", 0), 0u);
  const json r = completion_response(meta, {out}, {5, 3}, true, model);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["model"], "fake-model");
  EXPECT_TRUE(r["created"].is_number_integer());
  EXPECT_EQ(r["choices"][0]["index"], 0);
  EXPECT_EQ(r["choices"][0]["text"], "Hi!");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  const json& lp = r["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"H", "i", "!"}));
  EXPECT_EQ(lp["text_offset"], json({0, 1, 2}));
  EXPECT_DOUBLE_EQ(lp["token_logprobs"][1].get<double>(), -0.5);
  EXPECT_DOUBLE_EQ(lp["top_logprobs"][0]["z"].get<double>(), -2.0);
  EXPECT_EQ(r["usage"], json({{"prompt_tokens", 5}, {"completion_tokens", 3}, {"total_tokens", 8}}));

  const json no_lp = completion_response(meta, {out}, {5, 3}, false, model);
  EXPECT_TRUE(no_lp["choices"][0]["logprobs"].is_null());
}

TEST(OpenAiResponse, ChatWithLogprobsAndBytes) {
  const ModelView model = fake_model();
  ChoiceOutput out;
  out.add_token(token_event('O' + 1, "O"), true, model);
  out.add_token(token_event(0xC3 + 1, ""), true, model);  // the first byte of "é": not valid alone
  out.text = "O";
  out.finish = FinishReason::Stop;
  const ResponseMeta meta = make_response_meta(ApiKind::Chat, "fake-model");
  EXPECT_EQ(meta.id.rfind("chatcmpl-", 0), 0u);
  const json r = chat_response(meta, {out}, {4, 2}, true, model);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "O");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  const json& content = r["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], "O");
  EXPECT_EQ(content[0]["bytes"], json({'O'}));
  EXPECT_EQ(content[1]["token"], "\xEF\xBF\xBD");  // U+FFFD in the string, the byte exactly in "bytes"
  EXPECT_EQ(content[1]["bytes"], json({0xC3}));
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], "z");
  EXPECT_NO_THROW(dump_json(r));
}

TEST(OpenAiResponse, StreamChunks) {
  const ModelView model = fake_model();
  const ResponseMeta meta = make_response_meta(ApiKind::Chat, "fake-model");
  const json first = chat_chunk(meta, 1, {{"role", "assistant"}, {"content", ""}}, nullptr, FinishReason::None, true, model);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["index"], 1);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  const json last = chat_chunk(meta, 0, json::object(), nullptr, FinishReason::Length, false, model);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(last.contains("usage"));

  const ResponseMeta cmeta = make_response_meta(ApiKind::Completion, "fake-model");
  std::vector<TokenLogprob> one = {{'a' + 1, -0.25f, {}, 7}};
  const json c = completion_chunk(cmeta, 0, "a", &one, FinishReason::None, false, model);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "a");
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], json({7}));

  const json u = usage_chunk(cmeta, {3, 4});
  EXPECT_TRUE(u["choices"].is_array() && u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);
  EXPECT_NE(meta.id, cmeta.id);
}

TEST(OpenAiResponse, Utf8Helpers) {
  EXPECT_EQ(token_display("abc"), "abc");
  EXPECT_EQ(token_display("\xC3\xA9"), "\xC3\xA9");
  EXPECT_EQ(token_display("\xC3"), "\xEF\xBF\xBD");
  EXPECT_EQ(token_display("a\xE2\x82"), "a\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(token_display("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(count_chars("h\xC3\xA9llo \xF0\x9F\x98\x80"), 7);
  EXPECT_EQ(count_chars("\xA9"), 0);  // a lone continuation byte adds to the previous character
}

TEST(OpenAiErrors, ErrorObject) {
  const json b = error_body(ApiError(404, "nope", "model", "model_not_found"));
  EXPECT_EQ(b["error"]["message"], "nope");
  EXPECT_EQ(b["error"]["type"], "not_found_error");
  EXPECT_EQ(b["error"]["param"], "model");
  EXPECT_EQ(b["error"]["code"], "model_not_found");
  const json n = error_body(ApiError(503, "loading"));
  EXPECT_TRUE(n["error"]["param"].is_null());
  EXPECT_TRUE(n["error"]["code"].is_null());
  EXPECT_EQ(n["error"]["type"], "service_unavailable_error");
  EXPECT_STREQ(error_type_for_status(400), "invalid_request_error");
  EXPECT_STREQ(error_type_for_status(401), "authentication_error");
  EXPECT_STREQ(error_type_for_status(429), "rate_limit_error");
  EXPECT_STREQ(error_type_for_status(500), "server_error");
  // Invalid UTF-8 does not throw on the way out.
  EXPECT_EQ(dump_json(json("a\xFF")), "\"a\xEF\xBF\xBD\"");
}

// ---- SSE ------------------------------------------------------------------------------------

TEST(Sse, Framing) {
  const std::string ev = sse_data({{"text", "line one\nline two"}});
  EXPECT_EQ(ev.rfind("data: ", 0), 0u);
  EXPECT_EQ(ev.substr(ev.size() - 2), "\n\n");
  EXPECT_EQ(ev.find('\n'), ev.size() - 2);  // one line: the newline in the text is escaped
  EXPECT_EQ(json::parse(ev.substr(6))["text"], "line one\nline two");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  EXPECT_EQ(sse_comment("keep\nalive"), ": keep alive\n\n");
}

// ---- metrics --------------------------------------------------------------------------------

TEST(Metrics, HistogramAndText) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.1);  // on the bound: "le" is inclusive
  h.observe(0.5);
  h.observe(3.0);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_DOUBLE_EQ(h.sum(), 3.65);
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{2, 1, 1}));
  EXPECT_NEAR(h.quantile(0.5), 0.1, 1e-9);

  PrometheusText t;
  t.histogram("x_seconds", "help text", h);
  t.counter("y_total", "a counter", 3, {{"k", "a\"b\\c\nd"}});
  const std::string s = t.str();
  EXPECT_NE(s.find("# HELP x_seconds help text\n# TYPE x_seconds histogram\n"), std::string::npos);
  EXPECT_NE(s.find("x_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos);
  EXPECT_NE(s.find("x_seconds_bucket{le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(s.find("x_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(s.find("x_seconds_sum 3.65\n"), std::string::npos);
  EXPECT_NE(s.find("x_seconds_count 4\n"), std::string::npos);
  EXPECT_NE(s.find("# TYPE y_total counter\ny_total{k=\"a\\\"b\\\\c\\nd\"} 3\n"), std::string::npos);
  EXPECT_EQ(format_metric_value(1e20), "1e+20");
  EXPECT_EQ(format_metric_value(-0.25), "-0.25");
}

TEST(Metrics, RenderedServiceStats) {
  ServiceStats st;
  st.state = ServiceState::Ready;
  st.requests_submitted = 7;
  st.requests_finished["stop"] = 4;
  st.requests_finished["rejected"] = 1;
  st.requests_rejected["queue_full"] = 2;
  st.prompt_tokens = 100;
  st.generation_tokens = 50;
  st.running = 2;
  st.waiting = 3;
  st.engine.kv_known = true;
  st.engine.kv.pages_total = 10;
  st.engine.kv.pages_used = 4;
  st.engine.kv.page_bytes = 1024;
  st.engine.kv.pages_dense = 4;
  st.time_to_first_token.observe(0.2);
  HttpCounters http;
  http.responses_by_status[200] = 5;
  http.responses_by_status[429] = 2;
  http.threads = 40;
  http.threads_busy = 9;
  http.connections_queued = 1;
  const std::string s = render_metrics(st, http, "fake \"model\"");
  for (const char* line : {
           "headshard_model_info{model=\"fake \\\"model\\\"\"} 1",
           "headshard_server_state{state=\"ready\"} 1",
           "headshard_server_state{state=\"loading\"} 0",
           "headshard_requests_submitted_total 7",
           "headshard_requests_finished_total{outcome=\"stop\"} 4",
           "headshard_requests_finished_total{outcome=\"length\"} 0",
           "headshard_requests_finished_total{outcome=\"rejected\"} 1",
           "headshard_requests_rejected_total{reason=\"queue_full\"} 2",
           "headshard_prompt_tokens_total 100",
           "headshard_generation_tokens_total 50",
           "headshard_requests_running 2",
           "headshard_requests_waiting 3",
           "headshard_preemptions_total 0",
           "headshard_kv_pages_used 4",
           "headshard_kv_pages_free 6",
           "headshard_kv_used_bytes 4096",
           "headshard_kv_capacity_bytes 10240",
           "headshard_kv_pages_used_by_kind{kind=\"dense\"} 4",
           "headshard_time_to_first_token_seconds_count 1",
           "headshard_http_responses_total{code=\"429\"} 2",
           "headshard_http_threads 40",
           "headshard_http_threads_busy 9",
           "headshard_http_connections_queued 1",
       })
    EXPECT_NE(s.find(std::string(line) + "\n"), std::string::npos) << line;
  // Every family is declared once, before its samples.
  size_t pos = 0;
  std::map<std::string, int> types;
  while ((pos = s.find("# TYPE ", pos)) != std::string::npos) {
    const size_t end = s.find(' ', pos + 7);
    ++types[s.substr(pos + 7, end - pos - 7)];
    pos = end;
  }
  for (const auto& [name, n] : types) EXPECT_EQ(n, 1) << name;
  EXPECT_EQ(s.back(), '\n');
}

// ---- serve settings -------------------------------------------------------------------------

TEST(ServeConfig, FlagsWinOverEnvironment) {
  std::map<std::string, std::string> env = {{"HEADSHARD_PORT", "9000"},
                                            {"HEADSHARD_HOST", "0.0.0.0"},
                                            {"HEADSHARD_API_KEY", "secret"},
                                            {"HEADSHARD_MAX_QUEUE", "5"},
                                            {"HEADSHARD_KV_MEMORY", "64M"}};
  auto getenv_fn = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  std::vector<std::string> args = {"headshard", "serve", "--port", "8123", "--max-seqs=3", "--timeout", "2.5"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  const cli::ServeConfig c = cli::parse_serve_config(static_cast<int>(argv.size()), argv.data(), 2, getenv_fn);
  EXPECT_EQ(c.port, 8123);
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.api_key, "secret");
  EXPECT_EQ(c.max_queue, 5);
  EXPECT_EQ(c.max_seqs, 3);
  EXPECT_EQ(c.kv_memory.value_or(0), int64_t{64} << 20);
  EXPECT_DOUBLE_EQ(c.timeout_seconds, 2.5);
  EXPECT_EQ(c.device, "auto");

  auto parse = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"headshard", "serve"};
    a.insert(a.end(), extra.begin(), extra.end());
    std::vector<char*> v;
    for (auto& s : a) v.push_back(s.data());
    return cli::parse_serve_config(static_cast<int>(v.size()), v.data(), 2, [](const char*) { return nullptr; });
  };
  EXPECT_EQ(parse({}).host, "127.0.0.1");  // loopback unless asked
  EXPECT_EQ(parse({}).port, 8080);
  EXPECT_THROW(parse({"--port", "http"}), std::invalid_argument);
  EXPECT_THROW(parse({"--port", "70000"}), std::invalid_argument);
  EXPECT_THROW(parse({"--device", "tpu"}), std::invalid_argument);
  EXPECT_THROW(parse({"--max-seqs", "0"}), std::invalid_argument);
  EXPECT_EQ(parse({}).http_threads, 0);
  EXPECT_EQ(parse({"--http-threads", "64"}).http_threads, 64);
  EXPECT_THROW(parse({"--http-threads", "2"}), std::invalid_argument);
  EXPECT_THROW(parse({"--bogus", "1"}), std::invalid_argument);
}

TEST(ModelView, DefaultId) {
  EXPECT_EQ(default_model_id("models/SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2-135M-Instruct.Q4_1");
  EXPECT_EQ(default_model_id("/data/hf/Llama-3/"), "Llama-3");
  EXPECT_EQ(default_model_id("synthetic:tiny-llama"), "synthetic:tiny-llama");
}

}  // namespace
}  // namespace hs::server
