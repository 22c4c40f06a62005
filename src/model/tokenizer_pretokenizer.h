// Pre-tokenizers of byte-level BPE vocabularies: split text into the words BPE merges within.
//
// Each kind reproduces, code point for code point, what llama.cpp does for the GGUF
// tokenizer.ggml.pre names that map to it (its hand-written matchers and its std::regex stages,
// including their quirks), since GGUF models are tokenized against llama.cpp's behaviour.
// The patterns, in the order they are applied:
//   Gpt2:      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   StarCoder: \p{N} (every digit alone), then Gpt2                       ("smollm", "starcoder")
//   Llama3:    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//              ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2:     Llama3 with \p{N} instead of \p{N}{1,3}
//   Default:   [\p{P}$+<=>^~|]+, then Gpt2, then \p{N}+, then [0-9][0-9][0-9]
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace hs {

enum class BpePreTokenizerKind { Default, Gpt2, StarCoder, Llama3, Qwen2 };

struct BpePreTokenizer {
  BpePreTokenizerKind kind = BpePreTokenizerKind::Default;
  // When a whole word is a vocabulary token, it is taken as is without merging (llama3 family).
  bool ignore_merges = false;

  // From a GGUF tokenizer.ggml.pre value ("" means "default"). Throws std::invalid_argument
  // naming the value when it is not one of the supported families.
  static BpePreTokenizer from_gguf_name(const std::string& name);
  const char* name() const;

  // The words of `text`, in order; their concatenation is `text` (malformed UTF-8 bytes come
  // back as U+FFFD, as in llama.cpp).
  std::vector<std::string> split(std::string_view text) const;
};

}  // namespace hs
