// Chat prompts for a loaded model: its own template (from the GGUF) or its family's default.
#pragma once
#include <string>
#include <vector>

#include "model/chat_template.h"
#include "model/model.h"

namespace hs {

// The prompt text for `messages`, ending with the assistant's turn opened.
// Throws std::invalid_argument for messages the template cannot render.
std::string render_chat(const Model& model, const std::vector<ChatMessage>& messages);
// The template format in use ("chatml", "gemma", ...).
std::string chat_format_name(const Model& model);

}  // namespace hs
