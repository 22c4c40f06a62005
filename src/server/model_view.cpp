#include "server/model_view.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "model/chat.h"

namespace hs::server {

ModelView make_model_view(std::shared_ptr<const Model> model, std::string id, std::vector<std::string> aliases,
                          int context_length) {
  if (!model->tokenizer) throw std::invalid_argument("the model has no tokenizer; the server needs one");
  ModelView v;
  v.id = std::move(id);
  v.aliases = std::move(aliases);
  v.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  v.context_length = context_length > 0 ? std::min(context_length, model->config.context_length) : model->config.context_length;
  v.vocab_size = model->config.vocab_size;
  // Each function keeps the model alive.
  v.tokenize = [model](const std::string& text, bool add_special, bool parse_special) {
    const Tokenizer& tok = *model->tokenizer;
    return tok.encode(text, add_special && tok.add_bos_default(), parse_special);
  };
  v.detokenize = [model](const std::vector<int32_t>& ids) { return model->tokenizer->decode(ids); };
  v.render_chat = [model](const std::vector<ChatMessage>& messages) { return render_chat(*model, messages); };
  v.token_bytes = [model](int32_t id) { return model->tokenizer->token_to_piece(id, /*render_special=*/true); };
  return v;
}

std::string default_model_id(const std::string& spec) {
  std::string s = spec;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  const auto slash = s.find_last_of('/');
  if (slash != std::string::npos) s = s.substr(slash + 1);
  const std::string ext = ".gguf";
  if (s.size() > ext.size() && s.compare(s.size() - ext.size(), ext.size(), ext) == 0) s.resize(s.size() - ext.size());
  return s;
}

}  // namespace hs::server
