// The served model as the API layer sees it (ModelView), made from a loaded Model: its
// tokenizer, chat template and context length behind plain functions.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "server/openai.h"

namespace hs::server {

// `context_length` caps the model's own (0: the model's). Throws std::invalid_argument for a
// model without a tokenizer (the API speaks text).
ModelView make_model_view(std::shared_ptr<const Model> model, std::string id, std::vector<std::string> aliases,
                          int context_length = 0);

// The name clients use by default: the file or folder name, without a .gguf extension
// ("models/SmolLM2-135M-Instruct.Q4_1.gguf" -> "SmolLM2-135M-Instruct.Q4_1").
std::string default_model_id(const std::string& spec);

}  // namespace hs::server
