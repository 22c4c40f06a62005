// The Tokenizer base: vocabulary lookups, decoding, end-of-generation tokens, the GGUF factory,
// and IncrementalDetokenizer. The algorithms live in tokenizer_spm.cpp and tokenizer_bpe.cpp;
// Hugging Face folders are read by tokenizer_hf.cpp.
#include "model/tokenizer.h"

#include <algorithm>

#include "model/gguf.h"
#include "model/tokenizer_bpe.h"
#include "model/tokenizer_spm.h"
#include "model/unicode.h"

namespace hs {

namespace {

// Token texts that end a turn in the chat formats headshard knows (llama.cpp keeps a similar list).
constexpr const char* kEndOfTurnTexts[] = {
    "<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>", "<|end|>", "<|eom_id|>", "<|end_of_text|>", "<EOT>",
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  if (model == "llama") return SentencePieceTokenizer::from_gguf(gguf);
  if (model == "gpt2") return BpeTokenizer::from_gguf(gguf);
  throw ModelFileError(gguf.path() + ": tokenizer.ggml.model '" + model +
                       "' is not supported (supported: 'llama' = SentencePiece, 'gpt2' = byte-level BPE)");
}

std::unique_ptr<Tokenizer> Tokenizer::from_sentencepiece_file(const std::string& path) {
  return SentencePieceTokenizer::from_file(path);
}

void Tokenizer::finish_vocab(const std::vector<int32_t>& extra_eog) {
  token_ids_.clear();
  token_ids_.reserve(tokens_.size());
  for (int32_t id = 0; id < vocab_size(); ++id) token_ids_.emplace(tokens_[id], id);  // keeps the lowest id

  eog_ids_.clear();
  auto add_eog = [&](int32_t id) {
    if (id >= 0 && id < vocab_size() && std::find(eog_ids_.begin(), eog_ids_.end(), id) == eog_ids_.end())
      eog_ids_.push_back(id);
  };
  add_eog(eos_id_);
  for (int32_t id : extra_eog) add_eog(id);
  for (const char* text : kEndOfTurnTexts) {
    if (auto it = token_ids_.find(std::string_view(text)); it != token_ids_.end()) {
      add_eog(it->second);
      // A turn marker must never be produced from plain text or shown as text.
      TokenType& t = types_[it->second];
      if (t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Undefined) t = TokenType::Control;
    }
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) out += token_to_piece(id, render_special);
  if (decode_strips_leading_space_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  auto it = token_ids_.find(text);
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

std::string IncrementalDetokenizer::push(int32_t id) {
  std::string piece = tok_.token_to_piece(id, render_special_);
  if (at_start_ && !piece.empty()) {
    if (tok_.decode_strips_leading_space_ && piece[0] == ' ') piece.erase(0, 1);
    at_start_ = false;
  }
  pending_ += piece;
  const size_t n = utf8_complete_prefix(pending_);
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace hs
