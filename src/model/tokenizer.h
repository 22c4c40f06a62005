// Tokenizers: SentencePiece (through the sentencepiece library) and byte-level BPE.
//
// encode() follows llama.cpp's conventions for GGUF vocabularies: with parse_special, the text of
// control and user-defined tokens (e.g. "<|im_start|>") becomes those tokens (user-defined ones
// are split out even without it, as llama.cpp does); other text is tokenized by the model's
// algorithm. add_bos prepends BOS when the vocabulary has one (callers usually pass
// add_bos_default()). Errors in a vocabulary throw std::runtime_error (ModelFileError for GGUF).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hs {

class GgufFile;

// Hash for string-keyed maps that can be searched with a std::string_view without a copy.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringViewHash, std::equal_to<>>;

enum class TokenType : int32_t {  // values as in GGUF's tokenizer.ggml.token_type
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

class Tokenizer {
 public:
  // From a GGUF's tokenizer.ggml.* metadata ("llama" = SentencePiece, "gpt2" = byte-level BPE).
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& gguf);
  // From a Hugging Face model folder: tokenizer.model (SentencePiece) or tokenizer.json (BPE),
  // with tokenizer_config.json / config.json for BOS/EOS when present.
  static std::unique_ptr<Tokenizer> from_hf_dir(const std::string& dir);
  // From a SentencePiece model file.
  static std::unique_ptr<Tokenizer> from_sentencepiece_file(const std::string& path);

  virtual ~Tokenizer() = default;

  virtual std::string kind() const = 0;  // "sentencepiece" or "bpe"
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;
  // The bytes a token contributes to the output text (may be part of a UTF-8 character).
  // Control tokens give "" unless render_special.
  virtual std::string token_to_piece(int32_t id, bool render_special = false) const = 0;
  std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;

  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  const std::string& token_text(int32_t id) const { return tokens_.at(id); }  // raw vocab string
  TokenType token_type(int32_t id) const { return types_.at(id); }
  std::optional<int32_t> find_token(std::string_view text) const;

  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }
  bool add_bos_default() const { return add_bos_; }
  // End of generation: EOS and the model's end-of-turn tokens (<|im_end|>, <end_of_turn>, ...).
  bool is_end_of_generation(int32_t id) const;
  const std::vector<int32_t>& end_of_generation_ids() const { return eog_ids_; }

 protected:
  // Called by each implementation once tokens_, types_, bos_id_, eos_id_ are set: builds the
  // text -> id index and the end-of-generation list (EOS, `extra_eog`, and the tokens whose text
  // marks an end of turn; those become Control tokens if they were not, as llama.cpp does).
  void finish_vocab(const std::vector<int32_t>& extra_eog = {});

  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  int32_t bos_id_ = -1, eos_id_ = -1;
  bool add_bos_ = false;
  std::vector<int32_t> eog_ids_;
  StringMap<int32_t> token_ids_;  // raw vocab string -> id (the lowest id for duplicates)
  // SentencePiece with a dummy prefix: decoding drops the space the prefix put before the text.
  bool decode_strips_leading_space_ = false;

  friend class IncrementalDetokenizer;
};

// Turns a stream of token ids into text without ever emitting part of a UTF-8 character:
// bytes of an unfinished character are held until the character completes. Bytes that can never
// become part of a valid character are emitted as U+FFFD (one per maximal ill-formed sequence),
// so every string returned is valid UTF-8. For valid output, the concatenation of all push()
// results and flush() equals Tokenizer::decode of the same ids.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tok) : tok_(tok) {}
  // render_special: control tokens are shown as their text (as token_to_piece(id, true)).
  IncrementalDetokenizer(const Tokenizer& tok, bool render_special) : tok_(tok), render_special_(render_special) {}
  std::string push(int32_t id);  // the text that became complete with this token
  std::string flush();           // what is held (an unfinished character at the end, as U+FFFD)
 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool render_special_ = false;
  bool at_start_ = true;  // nothing emitted yet (for decode_strips_leading_space_)
};

}  // namespace hs
