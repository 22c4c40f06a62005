#include "model/chat.h"

namespace hs {

static ChatTemplate template_of(const Model& m) {
  // No BOS text in the prompt: the tokenizer adds BOS itself when the model wants one.
  return ChatTemplate::detect(m.chat_template, arch_name(m.config.arch));
}

std::string render_chat(const Model& model, const std::vector<ChatMessage>& messages) {
  try {
    return template_of(model).apply(messages, /*add_generation_prompt=*/true);
  } catch (const ChatTemplateError& e) {
    throw std::invalid_argument(e.what());
  }
}

std::string chat_format_name(const Model& model) {
  try {
    return hs::chat_format_name(template_of(model).format());
  } catch (const ChatTemplateError&) {
    return "none";
  }
}

}  // namespace hs
