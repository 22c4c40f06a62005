// SentencePiece tokenizer, run by the sentencepiece library.
//
// A GGUF "llama" vocabulary is turned into a ModelProto (pieces with scores and types, BPE model
// with byte fallback when the vocabulary has all 256 byte tokens, identity normalizer that only
// escapes spaces and optionally adds the dummy prefix) and loaded from memory. Special tokens are
// split out of the text first (see tokenizer_special.h); each remaining fragment is encoded by
// SentencePiece, which matches llama.cpp's score-ordered merging for these vocabularies.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/tokenizer_special.h"
#include "model/tokenizer_spm_proto.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace hs {

class SentencePieceTokenizer : public Tokenizer {
 public:
  ~SentencePieceTokenizer() override;

  // Throws ModelFileError when the vocabulary cannot be turned into a working model.
  static std::unique_ptr<SentencePieceTokenizer> from_gguf(const GgufFile& gguf);
  // A serialized ModelProto (the contents of a tokenizer.model file). Throws std::runtime_error.
  static std::unique_ptr<SentencePieceTokenizer> from_serialized(const std::string& bytes, const std::string& origin);
  static std::unique_ptr<SentencePieceTokenizer> from_file(const std::string& path);
  // The ModelProto from_gguf builds (exposed for tests and tools).
  static SpmModel model_from_gguf(const GgufFile& gguf);

  std::string kind() const override { return "sentencepiece"; }
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_to_piece(int32_t id, bool render_special = false) const override;

 private:
  SentencePieceTokenizer();
  // With tokens_, types_ and the special ids set: loads `serialized` into the processor and
  // builds the special-token splitter. `unescape_user_defined`: user-defined texts are matched
  // in raw input with ▁ read as a space (tokenizer.model stores "▁▁", GGUF already stores "  ").
  void init(const std::string& serialized, const std::string& origin, bool unescape_user_defined,
            const std::vector<int32_t>& extra_eog);

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  SpecialTokenSplitter special_;
};

}  // namespace hs
