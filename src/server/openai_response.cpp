#include "server/openai_response.h"

#include <atomic>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <random>

namespace hs::server {

using nlohmann::json;

ResponseMeta make_response_meta(ApiKind kind, std::string model) {
  // Ids only need to be unique: a random prefix per process and a counter.
  static const uint64_t prefix = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
  static std::atomic<uint64_t> counter{0};
  char buf[48];
  std::snprintf(buf, sizeof buf, "%012llx%08llx", static_cast<unsigned long long>(prefix & 0xffffffffffffULL),
                static_cast<unsigned long long>(counter.fetch_add(1) & 0xffffffffULL));
  ResponseMeta m;
  m.kind = kind;
  m.id = std::string(kind == ApiKind::Chat ? "chatcmpl-" : "cmpl-") + buf;
  m.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  m.model = std::move(model);
  return m;
}

int count_chars(const std::string& bytes) {
  int n = 0;
  for (unsigned char c : bytes) n += (c & 0xC0) != 0x80;
  return n;
}

std::string token_display(const std::string& bytes) {
  // Valid sequences are copied; each byte that does not belong to one becomes U+FFFD.
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    int len = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
    bool ok = len > 0 && i + len <= bytes.size();
    uint32_t cp = ok ? (c & (0x7Fu >> len)) : 0;
    for (int k = 1; ok && k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(bytes[i + k]);
      ok = (d & 0xC0) == 0x80;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(bytes, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

void ChoiceOutput::add_token(const TokenEvent& ev, bool keep_logprobs, const ModelView& model) {
  ++n_tokens;
  if (!keep_logprobs) return;
  TokenLogprob lp;
  lp.token = ev.token;
  lp.logprob = ev.logprob;
  lp.top = ev.top_logprobs;
  lp.text_offset = chars;
  chars += count_chars(model.token_bytes(ev.token));
  logprobs.push_back(std::move(lp));
}

const char* finish_reason_json(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    default: return "";
  }
}

namespace {

json finish_json(FinishReason r) { return r == FinishReason::None ? json(nullptr) : json(finish_reason_json(r)); }

// OpenAI's logprob for a token that cannot be -inf in JSON: a very negative number.
double finite_logprob(float lp) { return std::isfinite(lp) ? static_cast<double>(lp) : -9999.0; }

json bytes_array(const std::string& bytes) {
  json a = json::array();
  for (unsigned char c : bytes) a.push_back(static_cast<int>(c));
  return a;
}

}  // namespace

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json completion_logprobs_json(const std::vector<TokenLogprob>& lps, const ModelView& model) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const TokenLogprob& lp : lps) {
    tokens.push_back(token_display(model.token_bytes(lp.token)));
    token_logprobs.push_back(finite_logprob(lp.logprob));
    json alternatives = json::object();
    for (const auto& [id, l] : lp.top) {
      const std::string key = token_display(model.token_bytes(id));
      if (!alternatives.contains(key)) alternatives[key] = finite_logprob(l);  // best first: keep the first
    }
    top.push_back(alternatives);
    offsets.push_back(lp.text_offset);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json chat_logprobs_json(const std::vector<TokenLogprob>& lps, const ModelView& model) {
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    const std::string bytes = model.token_bytes(lp.token);
    json top = json::array();
    for (const auto& [id, l] : lp.top) {
      const std::string b = model.token_bytes(id);
      top.push_back({{"token", token_display(b)}, {"logprob", finite_logprob(l)}, {"bytes", bytes_array(b)}});
    }
    content.push_back({{"token", token_display(bytes)},
                       {"logprob", finite_logprob(lp.logprob)},
                       {"bytes", bytes_array(bytes)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices, const Usage& usage,
                         bool logprobs, const ModelView& model) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    cs.push_back({{"index", i},
                  {"text", c.text},
                  {"logprobs", logprobs ? completion_logprobs_json(c.logprobs, model) : json(nullptr)},
                  {"finish_reason", finish_json(c.finish)}});
  }
  return {{"id", meta.id},         {"object", "text_completion"}, {"created", meta.created},
          {"model", meta.model},   {"choices", cs},               {"usage", usage_json(usage)},
          {"system_fingerprint", nullptr}};
}

json chat_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices, const Usage& usage,
                   bool logprobs, const ModelView& model) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    cs.push_back({{"index", i},
                  {"message", {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}}},
                  {"logprobs", logprobs ? chat_logprobs_json(c.logprobs, model) : json(nullptr)},
                  {"finish_reason", finish_json(c.finish)}});
  }
  return {{"id", meta.id},       {"object", "chat.completion"}, {"created", meta.created},
          {"model", meta.model}, {"choices", cs},               {"usage", usage_json(usage)},
          {"system_fingerprint", nullptr}};
}

json completion_chunk(const ResponseMeta& meta, int index, const std::string& text,
                      const std::vector<TokenLogprob>* logprobs, FinishReason finish, bool with_usage_field,
                      const ModelView& model) {
  json choice = {{"index", index},
                 {"text", text},
                 {"logprobs", logprobs ? completion_logprobs_json(*logprobs, model) : json(nullptr)},
                 {"finish_reason", finish_json(finish)}};
  json chunk = {{"id", meta.id},       {"object", "text_completion"}, {"created", meta.created},
                {"model", meta.model}, {"choices", json::array({choice})}, {"system_fingerprint", nullptr}};
  if (with_usage_field) chunk["usage"] = nullptr;
  return chunk;
}

json chat_chunk(const ResponseMeta& meta, int index, json delta, const std::vector<TokenLogprob>* logprobs,
                FinishReason finish, bool with_usage_field, const ModelView& model) {
  json choice = {{"index", index},
                 {"delta", std::move(delta)},
                 {"logprobs", logprobs ? chat_logprobs_json(*logprobs, model) : json(nullptr)},
                 {"finish_reason", finish_json(finish)}};
  json chunk = {{"id", meta.id},       {"object", "chat.completion.chunk"}, {"created", meta.created},
                {"model", meta.model}, {"choices", json::array({choice})},  {"system_fingerprint", nullptr}};
  if (with_usage_field) chunk["usage"] = nullptr;
  return chunk;
}

json usage_chunk(const ResponseMeta& meta, const Usage& usage) {
  return {{"id", meta.id},
          {"object", meta.kind == ApiKind::Chat ? "chat.completion.chunk" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array()},
          {"system_fingerprint", nullptr},
          {"usage", usage_json(usage)}};
}

}  // namespace hs::server
