#include "server/openai.h"

#include <algorithm>

#include "server/json_fields.h"

namespace hs::server {

using nlohmann::json;

bool ModelView::accepts(const std::string& name) const {
  return name == id || std::find(aliases.begin(), aliases.end(), name) != aliases.end();
}

int ApiRequest::prompt_tokens() const {
  int n_tok = 0;
  for (const auto& p : prompts) n_tok += static_cast<int>(p.size());
  return n_tok;
}

std::vector<GenerationRequest> ApiRequest::sequences() const {
  std::vector<GenerationRequest> out;
  out.reserve(num_choices());
  for (const auto& prompt : prompts) {
    for (int j = 0; j < n; ++j) {
      GenerationRequest r = params;
      r.prompt = prompt;
      if (params.sampling.seed) r.sampling.seed = *params.sampling.seed + static_cast<uint64_t>(j);
      out.push_back(std::move(r));
    }
  }
  return out;
}

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at ...".
    std::string what = e.what();
    const auto p = what.find("] ");
    throw ApiError(400, "the body is not valid JSON: " + (p == std::string::npos ? what : what.substr(p + 2)), "",
                   "invalid_json");
  }
  if (!j.is_object())
    throw ApiError(400, std::string("the body must be a JSON object, not ") + json_type_phrase(j), "", "invalid_json");
  return j;
}

namespace {

void check_model(const JsonFields& f, const ModelView& model, ApiRequest& r) {
  if (auto name = f.string("model")) {
    if (!model.accepts(*name))
      throw ApiError(404, "the model '" + *name + "' does not exist; this server serves '" + model.id + "'", "model",
                     "model_not_found");
    r.model = *name;
  }
}

std::vector<int32_t> token_ids(const json& arr, const ModelView& model, const char* what) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const json& t : arr) {
    const std::optional<int64_t> id = as_integer(t);
    if (!id) throw invalid_param("prompt", std::string(what) + " must hold only integer token ids");
    if (*id < 0 || *id >= model.vocab_size)
      throw invalid_param("prompt", "token id " + std::to_string(*id) + " is outside the vocabulary [0, " +
                                        std::to_string(model.vocab_size) + ")");
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

std::vector<int32_t> tokenize_prompt(const std::string& text, const ModelView& model) {
  return model.tokenize(text, /*add_special=*/true, /*parse_special=*/true);
}

// prompt: a string, strings, token ids, or arrays of token ids.
std::vector<std::vector<int32_t>> parse_prompt(const JsonFields& f, const ModelView& model) {
  const json* p = f.get("prompt");
  if (!p) throw ApiError(400, "prompt is required", "prompt", "missing_field");
  const char* shapes = "prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids";
  std::vector<std::vector<int32_t>> prompts;
  if (p->is_string()) {
    prompts.push_back(tokenize_prompt(p->get<std::string>(), model));
  } else if (p->is_array()) {
    if (p->empty()) throw invalid_param("prompt", "prompt must not be an empty array");
    const json& first = p->front();
    if (first.is_string()) {
      for (const json& s : *p) {
        if (!s.is_string()) throw invalid_param("prompt", shapes);
        prompts.push_back(tokenize_prompt(s.get<std::string>(), model));
      }
    } else if (first.is_number()) {
      prompts.push_back(token_ids(*p, model, "a token id prompt"));
    } else if (first.is_array()) {
      for (const json& a : *p) {
        if (!a.is_array()) throw invalid_param("prompt", shapes);
        prompts.push_back(token_ids(a, model, "each token id prompt"));
      }
    } else {
      throw invalid_param("prompt", shapes);
    }
  } else {
    throw ApiError(400, std::string(shapes) + ", not " + json_type_phrase(*p), "prompt", "invalid_type");
  }
  if (static_cast<int>(prompts.size()) > kMaxPrompts)
    throw invalid_param("prompt", "at most " + std::to_string(kMaxPrompts) + " prompts per request");
  for (const auto& ids : prompts)
    if (ids.empty()) throw invalid_param("prompt", "the prompt is empty (no tokens)");
  return prompts;
}

std::vector<std::string> parse_stop(const JsonFields& f) {
  const json* s = f.get("stop");
  std::vector<std::string> stops;
  if (!s) return stops;
  if (s->is_string()) {
    stops.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    for (const json& e : *s) {
      if (!e.is_string()) throw ApiError(400, "stop must be a string or an array of strings", "stop", "invalid_type");
      stops.push_back(e.get<std::string>());
    }
  } else {
    throw ApiError(400, std::string("stop must be a string or an array of strings, not ") + json_type_phrase(*s), "stop",
                   "invalid_type");
  }
  if (static_cast<int>(stops.size()) > kMaxStops)
    throw invalid_param("stop", "at most " + std::to_string(kMaxStops) + " stop strings");
  for (const auto& st : stops)
    if (st.empty()) throw invalid_param("stop", "stop strings must not be empty");
  return stops;
}

std::vector<std::pair<int32_t, float>> parse_logit_bias(const JsonFields& f, const ModelView& model) {
  std::vector<std::pair<int32_t, float>> bias;
  const json* b = f.get("logit_bias");
  if (!b) return bias;
  if (!b->is_object())
    throw ApiError(400, std::string("logit_bias must be an object mapping token ids to biases, not ") +
                            json_type_phrase(*b),
                   "logit_bias", "invalid_type");
  for (const auto& [key, value] : b->items()) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (key.empty() || used != key.size())
      throw invalid_param("logit_bias", "logit_bias keys must be token ids, got '" + key + "'");
    if (id < 0 || id >= model.vocab_size)
      throw invalid_param("logit_bias", "logit_bias token id " + key + " is outside the vocabulary [0, " +
                                            std::to_string(model.vocab_size) + ")");
    if (!value.is_number()) throw ApiError(400, "logit_bias values must be numbers", "logit_bias", "invalid_type");
    const double v = value.get<double>();
    if (!(v >= -100.0 && v <= 100.0))
      throw invalid_param("logit_bias", "logit_bias values must be in [-100, 100]");
    bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(v));
  }
  return bias;
}

void reject_unsupported(const JsonFields& f, int n) {
  auto unsupported = [](const char* field, const std::string& msg) { return ApiError(400, msg, field, "unsupported"); };
  if (f.boolean("echo").value_or(false)) throw unsupported("echo", "echo is not supported");
  if (auto suffix = f.get("suffix"); suffix && !(suffix->is_string() && suffix->get<std::string>().empty()))
    throw unsupported("suffix", "suffix is not supported");
  if (auto best_of = f.integer("best_of"); best_of && *best_of != 1 && *best_of != n)
    throw unsupported("best_of", "best_of other than n is not supported");
  for (const char* field : {"tools", "functions"})
    if (const json* t = f.get(field); t && !(t->is_array() && t->empty()))
      throw unsupported(field, std::string(field) + " are not supported");
  if (const json* rf = f.get("response_format")) {
    if (!rf->is_object()) throw ApiError(400, "response_format must be an object", "response_format", "invalid_type");
    const json* type = JsonFields(*rf).get("type");
    if (type && !(type->is_string() && type->get<std::string>() == "text"))
      throw unsupported("response_format", "only response_format {\"type\": \"text\"} is supported");
  }
}

// Everything common to both endpoints, after the prompts are known.
void parse_common(const JsonFields& f, const ModelView& model, ApiRequest& r) {
  r.n = static_cast<int>(f.integer_in("n", 1, kMaxChoices).value_or(1));
  reject_unsupported(f, r.n);
  f.string("user");  // the caller's end-user id: checked as OpenAI does, otherwise unused

  SamplingParams& s = r.params.sampling;
  s.temperature = static_cast<float>(f.number_in("temperature", 0.0, 2.0).value_or(1.0));
  s.top_p = static_cast<float>(f.number_in("top_p", 0.0, 1.0, /*open_lo=*/true).value_or(1.0));
  s.top_k = static_cast<int>(f.integer_in("top_k", -1, model.vocab_size).value_or(0));
  s.min_p = static_cast<float>(f.number_in("min_p", 0.0, 1.0).value_or(0.0));
  s.presence_penalty = static_cast<float>(f.number_in("presence_penalty", -2.0, 2.0).value_or(0.0));
  s.frequency_penalty = static_cast<float>(f.number_in("frequency_penalty", -2.0, 2.0).value_or(0.0));
  s.repetition_penalty = static_cast<float>(f.number_in("repetition_penalty", 0.0, 10.0, true).value_or(1.0));
  if (const json* seed = f.get("seed")) {
    if (seed->is_number_unsigned()) {
      s.seed = seed->get<uint64_t>();
    } else if (auto v = f.integer("seed")) {
      s.seed = static_cast<uint64_t>(*v);  // negative seeds wrap: any integer is a seed
    }
  }
  s.logit_bias = parse_logit_bias(f, model);
  r.params.stop = parse_stop(f);
  r.params.ignore_eos = f.boolean("ignore_eos").value_or(false);

  r.stream = f.boolean("stream").value_or(false);
  if (const json* so = f.get("stream_options")) {
    if (!so->is_object()) throw ApiError(400, "stream_options must be an object", "stream_options", "invalid_type");
    if (!r.stream) throw invalid_param("stream_options", "stream_options is only allowed when stream is true");
    r.include_usage = JsonFields(*so).boolean("include_usage").value_or(false);
  }

  // max_tokens: the newer name wins when both are given.
  const char* max_key = f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  std::optional<int64_t> max_tokens = f.integer(max_key);
  if (max_tokens && *max_tokens < 1)
    throw invalid_param(max_key, std::string(max_key) + " must be at least 1, got " + std::to_string(*max_tokens));
  size_t longest = 0;
  for (const auto& p : r.prompts) longest = std::max(longest, p.size());
  const char* prompt_field = r.kind == ApiKind::Chat ? "messages" : "prompt";
  if (static_cast<int64_t>(longest) >= model.context_length)
    throw ApiError(400,
                   "this model's context length is " + std::to_string(model.context_length) + " tokens, but the " +
                       (r.kind == ApiKind::Chat ? "messages take " : "prompt takes ") + std::to_string(longest) +
                       " tokens",
                   prompt_field, "context_length_exceeded");
  if (!max_tokens) max_tokens = r.kind == ApiKind::Chat ? model.context_length - static_cast<int64_t>(longest) : 16;
  if (static_cast<int64_t>(longest) + *max_tokens > model.context_length)
    throw ApiError(400,
                   "this model's context length is " + std::to_string(model.context_length) + " tokens, but " +
                       std::to_string(longest + *max_tokens) + " were requested (" + std::to_string(longest) +
                       " in the " + (r.kind == ApiKind::Chat ? "messages" : "prompt") + ", " +
                       std::to_string(*max_tokens) + " in the completion); reduce " + max_key + " or the " +
                       prompt_field,
                   max_key, "context_length_exceeded");
  r.params.max_tokens = static_cast<int>(*max_tokens);
}

}  // namespace

ApiRequest parse_completion_request(const std::string& body, const ModelView& model) {
  const json j = parse_body(body);
  const JsonFields f(j);
  ApiRequest r;
  r.kind = ApiKind::Completion;
  check_model(f, model, r);
  r.prompts = parse_prompt(f, model);
  parse_common(f, model, r);
  if (const json* lp = f.get("logprobs")) {
    if (lp->is_boolean())  // some clients send the chat form; true means "the chosen token only"
      r.logprobs = lp->get<bool>();
    else
      r.top_logprobs = static_cast<int>(*f.integer_in("logprobs", 0, kMaxTopLogprobs)), r.logprobs = true;
  }
  r.params.logprobs = r.logprobs ? r.top_logprobs : -1;
  return r;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const JsonFields f(body);
  const json* m = f.get("messages");
  if (!m) throw ApiError(400, "messages is required", "messages", "missing_field");
  if (!m->is_array())
    throw ApiError(400, std::string("messages must be an array, not ") + json_type_phrase(*m), "messages",
                   "invalid_type");
  if (m->empty()) throw invalid_param("messages", "messages must not be empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) throw ApiError(400, where + " must be an object", "messages", "invalid_type");
    const JsonFields mf(msg);
    const std::optional<std::string> role = mf.string("role");
    if (!role) throw ApiError(400, where + ".role is required", "messages", "missing_field");
    ChatMessage cm;
    if (*role == "developer")
      cm.role = "system";  // OpenAI's newer name for the system role
    else if (*role == "system" || *role == "user" || *role == "assistant" || *role == "tool")
      cm.role = *role;
    else
      throw invalid_param("messages", where + ".role must be system, developer, user, assistant or tool, got '" +
                                          *role + "'");
    const json* content = mf.get("content");
    if (!content) {
      if (cm.role != "assistant") throw ApiError(400, where + ".content is required", "messages", "missing_field");
    } else if (content->is_string()) {
      cm.content = content->get<std::string>();
    } else if (content->is_array()) {
      // Content parts: text only; parts are joined with newlines.
      for (const json& part : *content) {
        const std::string type = part.is_object() && part.contains("type") && part["type"].is_string()
                                     ? part["type"].get<std::string>()
                                     : "";
        if (type != "text" || !part.contains("text") || !part["text"].is_string())
          throw invalid_param("messages", where + ".content: only text parts ({\"type\": \"text\", \"text\": ...}) "
                                                  "are supported");
        if (!cm.content.empty()) cm.content += "\n";
        cm.content += part["text"].get<std::string>();
      }
    } else {
      throw ApiError(400, where + ".content must be a string or an array of text parts, not " +
                              json_type_phrase(*content),
                     "messages", "invalid_type");
    }
    out.push_back(std::move(cm));
  }
  return out;
}

namespace {

// The body's messages through the model's chat template.
std::string render_messages(const json& body, const ModelView& model) {
  const std::vector<ChatMessage> messages = parse_messages(body);
  try {
    return model.render_chat(messages);
  } catch (const std::exception& e) {
    throw invalid_param("messages", std::string("the chat template cannot render these messages: ") + e.what());
  }
}

}  // namespace

ApiRequest parse_chat_request(const std::string& body, const ModelView& model) {
  const json j = parse_body(body);
  const JsonFields f(j);
  ApiRequest r;
  r.kind = ApiKind::Chat;
  check_model(f, model, r);
  const std::string text = render_messages(j, model);
  r.prompts.push_back(model.tokenize(text, /*add_special=*/true, /*parse_special=*/true));
  if (r.prompts[0].empty()) throw invalid_param("messages", "the rendered conversation has no tokens");
  parse_common(f, model, r);
  r.logprobs = f.boolean("logprobs").value_or(false);
  if (auto top = f.integer_in("top_logprobs", 0, kMaxTopLogprobs)) {
    if (!r.logprobs) throw invalid_param("top_logprobs", "top_logprobs needs logprobs set to true");
    r.top_logprobs = static_cast<int>(*top);
  }
  r.params.logprobs = r.logprobs ? r.top_logprobs : -1;
  return r;
}

json tokenize_endpoint(const std::string& body, const ModelView& model) {
  const json j = parse_body(body);
  const JsonFields f(j);
  const char* key = f.has("content") ? "content" : "prompt";
  const std::optional<std::string> text = f.string(key);
  if (!text) throw ApiError(400, "content is required (the text to tokenize)", "content", "missing_field");
  const bool add_special = f.boolean("add_special").value_or(false);
  const bool parse_special = f.boolean("parse_special").value_or(true);
  const bool with_pieces = f.boolean("with_pieces").value_or(false);
  const std::vector<int32_t> ids = model.tokenize(*text, add_special, parse_special);
  json tokens = json::array();
  for (int32_t id : ids) {
    if (with_pieces)
      tokens.push_back({{"id", id}, {"piece", model.token_bytes(id)}});
    else
      tokens.push_back(id);
  }
  return {{"tokens", tokens}};
}

json detokenize_endpoint(const std::string& body, const ModelView& model) {
  const json j = parse_body(body);
  const json* t = JsonFields(j).get("tokens");
  if (!t) throw ApiError(400, "tokens is required", "tokens", "missing_field");
  if (!t->is_array()) throw ApiError(400, "tokens must be an array of token ids", "tokens", "invalid_type");
  std::vector<int32_t> ids;
  for (const json& e : *t) {
    const std::optional<int64_t> id = as_integer(e);
    if (!id) throw ApiError(400, "tokens must be an array of token ids", "tokens", "invalid_type");
    if (*id < 0 || *id >= model.vocab_size)
      throw invalid_param("tokens", "token id " + std::to_string(*id) + " is outside the vocabulary");
    ids.push_back(static_cast<int32_t>(*id));
  }
  return {{"content", model.detokenize(ids)}};
}

json apply_template_endpoint(const std::string& body, const ModelView& model) {
  return {{"prompt", render_messages(parse_body(body), model)}};
}

}  // namespace hs::server
