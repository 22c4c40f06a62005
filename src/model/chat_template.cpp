#include "model/chat_template.h"

#include <algorithm>
#include <initializer_list>

#include "model/gguf.h"
#include "model/unicode.h"

namespace hs {

namespace {

bool one_of(const std::string& s, std::initializer_list<const char*> options) {
  return std::any_of(options.begin(), options.end(), [&](const char* o) { return s == o; });
}

void check_roles(const std::vector<ChatMessage>& messages, ChatFormat format) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    const bool ok = format == ChatFormat::Gemma ? one_of(role, {"system", "user", "assistant"})
                                                : one_of(role, {"system", "user", "assistant", "tool"});
    if (!ok)
      throw ChatTemplateError("message " + std::to_string(i) + " has unknown role '" + role + "' for the " +
                              chat_format_name(format) + " chat format (expected system, user, assistant" +
                              (format == ChatFormat::Gemma ? ")" : " or tool)"));
  }
}

// The architecture's conventional format when a model carries no template.
bool format_for_architecture(const std::string& arch, ChatFormat& out) {
  if (arch.rfind("gemma", 0) == 0) {
    out = ChatFormat::Gemma;
    return true;
  }
  if (arch.rfind("qwen", 0) == 0) {
    out = ChatFormat::ChatML;
    return true;
  }
  return false;
}

}  // namespace

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML: return "ChatML";
    case ChatFormat::Gemma: return "Gemma";
    case ChatFormat::Llama3: return "Llama-3";
  }
  return "?";
}

std::string jinja_trim(const std::string& s) {
  // Positions of the first and past-the-last code point that is not whitespace.
  size_t begin = s.size(), end = 0;
  for (size_t pos = 0; pos < s.size();) {
    const size_t start = pos;
    const char32_t cp = utf8_decode(s, pos);
    if (!unicode_is_python_space(cp)) {
      begin = std::min(begin, start);
      end = pos;
    }
  }
  return begin < end ? s.substr(begin, end - begin) : std::string();
}

std::string chatml_default_system(const std::string& source) {
  static const std::string kHead = "<|im_start|>system";
  static const std::string kTail = "<|im_end|>";
  for (size_t at = source.find(kHead); at != std::string::npos; at = source.find(kHead, at + 1)) {
    // It must open a string literal: '<|im_start|>system\n...<|im_end|>...' with the whole
    // prompt inside that one literal (no concatenation with message fields).
    if (at == 0 || (source[at - 1] != '\'' && source[at - 1] != '"')) continue;
    const char quote = source[at - 1];
    size_t p = at + kHead.size();
    if (source.compare(p, 1, "\n") == 0) {
      p += 1;
    } else if (source.compare(p, 2, "\\n") == 0) {
      p += 2;
    } else {
      continue;
    }
    const size_t end = source.find(kTail, p);
    if (end == std::string::npos) continue;
    std::string text;
    bool literal = true;
    for (size_t i = p; i < end && literal; ++i) {
      const char c = source[i];
      if (c == quote) {
        literal = false;
      } else if (c == '\\' && i + 1 < end) {
        const char e = source[++i];
        text += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
      } else {
        text += c;
      }
    }
    if (literal && !text.empty()) return text;
  }
  return "";
}

ChatTemplate::ChatTemplate(ChatFormat format, std::string default_system, std::string bos_token)
    : format_(format), default_system_(std::move(default_system)), bos_token_(std::move(bos_token)) {}

ChatTemplate ChatTemplate::detect(const std::string& source, const std::string& architecture, std::string bos_token) {
  if (source.find("<start_of_turn>") != std::string::npos) return ChatTemplate(ChatFormat::Gemma, "", std::move(bos_token));
  if (source.find("<|start_header_id|>") != std::string::npos)
    return ChatTemplate(ChatFormat::Llama3, "", std::move(bos_token));
  if (source.find("<|im_start|>") != std::string::npos)
    return ChatTemplate(ChatFormat::ChatML, chatml_default_system(source), std::move(bos_token));
  ChatFormat f;
  if (format_for_architecture(architecture, f)) return ChatTemplate(f, "", std::move(bos_token));
  if (source.empty())
    throw ChatTemplateError("the model has no chat template and architecture '" + architecture +
                            "' has no default chat format");
  throw ChatTemplateError("chat template not recognised (supported: ChatML <|im_start|>, Gemma <start_of_turn>, "
                          "Llama-3 <|start_header_id|>) and architecture '" + architecture +
                          "' has no default chat format");
}

ChatTemplate ChatTemplate::from_gguf(const GgufFile& gguf) {
  return detect(gguf.opt_string("tokenizer.chat_template").value_or(""),
                gguf.opt_string("general.architecture").value_or(""), "");
}

std::string ChatTemplate::apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  check_roles(messages, format_);
  switch (format_) {
    case ChatFormat::ChatML: return apply_chatml(messages, add_generation_prompt);
    case ChatFormat::Gemma: return apply_gemma(messages, add_generation_prompt);
    case ChatFormat::Llama3: return apply_llama3(messages, add_generation_prompt);
  }
  return "";
}

std::string ChatTemplate::apply_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && !default_system_.empty() && messages[0].role != "system")
      out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
    out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string ChatTemplate::apply_gemma(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  // The template reads messages[0] unconditionally, which fails on an empty conversation.
  if (messages.empty()) throw ChatTemplateError("the Gemma chat format needs at least one message");
  std::string out = bos_token_;
  std::string first_user_prefix;
  size_t first = 0;
  if (messages[0].role == "system") {
    first_user_prefix = messages[0].content + "\n\n";
    first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const size_t index0 = i - first;
    const ChatMessage& m = messages[i];
    if ((m.role == "user") != (index0 % 2 == 0))
      throw ChatTemplateError("Conversation roles must alternate user/assistant/user/assistant/... (message " +
                              std::to_string(i) + " has role '" + m.role + "')");
    const std::string role = m.role == "assistant" ? "model" : m.role;
    out += "<start_of_turn>" + role + "\n" + (index0 == 0 ? first_user_prefix : "") + jinja_trim(m.content) +
           "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

std::string ChatTemplate::apply_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos_token_;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + jinja_trim(messages[i].content) +
           "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

}  // namespace hs
