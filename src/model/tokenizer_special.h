// Splitting the text of special tokens out of input text before the model's algorithm runs.
//
// Reproduces llama.cpp's tokenizer_st_partition: special tokens are taken longest text first
// (ties by lower id); each one claims its leftmost non-overlapping occurrences inside the text
// still unclaimed. User-defined tokens are always split out; control and unknown tokens only
// when parse_special is set. Runs in one pass over the text with a trie instead of one
// substring search per special token, which matters for vocabularies with thousands of them.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hs {

struct TextFragment {
  int32_t token = -1;  // a special token, or -1 for raw text
  size_t begin = 0, length = 0;  // the raw text's bytes in the input (unused for tokens)
};

class SpecialTokenSplitter {
 public:
  // `always`: split out even without parse_special (user-defined tokens).
  void add(int32_t id, const std::string& text, bool always);
  bool empty() const { return entries_.empty(); }

  // The text as raw fragments and special tokens, in order; raw fragments are never empty.
  std::vector<TextFragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Entry {
    int32_t id;
    std::string text;
    bool always;
  };
  std::vector<Entry> entries_;
  // Trie over the token texts: node index -> children keyed by (node << 8 | byte); node 0 is the root.
  std::unordered_map<uint64_t, uint32_t> edges_;
  std::vector<int32_t> node_entry_;  // entry index whose text ends at a node, or -1
};

}  // namespace hs
