// Byte-level BPE (GPT-2 style): text -> pre-tokenizer words -> bytes mapped to printable code
// points (GPT-2's byte-to-unicode table) -> merges applied by rank within each word.
//
// Matches llama.cpp's BPE session for GGUF "gpt2" vocabularies, including its fallbacks: a final
// symbol missing from the vocabulary is emitted byte by byte.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/tokenizer_pretokenizer.h"
#include "model/tokenizer_special.h"

namespace hs {

class BpeTokenizer : public Tokenizer {
 public:
  struct Vocab {
    std::vector<std::string> tokens;  // byte-level encoded texts, as in GGUF / tokenizer.json
    std::vector<TokenType> types;     // same size as tokens
    std::vector<std::string> merges;  // "left right", in rank order
    BpePreTokenizer pre;
    int32_t bos_id = -1, eos_id = -1;
    bool add_bos = false;
    std::vector<int32_t> extra_eog;  // more end-of-generation ids (e.g. from config.json)
  };
  // Throws std::runtime_error on an inconsistent vocabulary.
  explicit BpeTokenizer(Vocab v);
  static std::unique_ptr<BpeTokenizer> from_gguf(const GgufFile& gguf);

  std::string kind() const override { return "bpe"; }
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_to_piece(int32_t id, bool render_special = false) const override;
  const BpePreTokenizer& pre_tokenizer() const { return pre_; }

 private:
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;

  BpePreTokenizer pre_;
  StringMap<int32_t> merge_rank_;  // "left right" -> rank
  SpecialTokenSplitter special_;
};

// GPT-2's reversible byte <-> code point mapping: printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100.. in byte order.
const std::string& bpe_byte_to_utf8(uint8_t byte);
// The byte a mapped code point stands for, or -1 when it is not one of the 256.
int bpe_codepoint_to_byte(char32_t cp);

}  // namespace hs
