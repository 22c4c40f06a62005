#include "model/tokenizer_bpe.h"

#include <array>
#include <queue>
#include <stdexcept>

#include "model/gguf.h"
#include "model/unicode.h"

namespace hs {

namespace {

struct ByteTables {
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 0x180> from_cp;  // mapped code points all lie below U+0180
};

const ByteTables& byte_tables() {
  static const ByteTables tables = [] {
    ByteTables t;
    t.from_cp.fill(-1);
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      t.to_utf8[b] = utf8_encode(cp);
      t.from_cp[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return tables;
}

}  // namespace

const std::string& bpe_byte_to_utf8(uint8_t byte) { return byte_tables().to_utf8[byte]; }

int bpe_codepoint_to_byte(char32_t cp) { return cp < 0x180 ? byte_tables().from_cp[cp] : -1; }

BpeTokenizer::BpeTokenizer(Vocab v) : pre_(v.pre) {
  if (v.types.size() != v.tokens.size()) throw std::runtime_error("BPE vocabulary: token types and tokens differ in count");
  tokens_ = std::move(v.tokens);
  types_ = std::move(v.types);
  const auto n = static_cast<int32_t>(tokens_.size());
  auto check_id = [&](int32_t id, const char* what) {
    if (id >= n) throw std::runtime_error(std::string("BPE vocabulary: ") + what + " id " + std::to_string(id) + " out of range");
    return id;
  };
  bos_id_ = check_id(v.bos_id, "BOS");
  eos_id_ = check_id(v.eos_id, "EOS");
  add_bos_ = v.add_bos && bos_id_ >= 0;
  for (int32_t id : v.extra_eog) check_id(id, "end-of-generation");

  merge_rank_.reserve(v.merges.size());
  for (size_t i = 0; i < v.merges.size(); ++i) {
    // The split is at the first space after the first byte, as llama.cpp reads GGUF merges.
    const std::string& m = v.merges[i];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) throw std::runtime_error("BPE vocabulary: merge " + std::to_string(i) + " has no space: '" + m + "'");
    merge_rank_.emplace(m, static_cast<int32_t>(i));  // a repeated pair keeps its first (best) rank
  }

  finish_vocab(v.extra_eog);
  for (int32_t id = 0; id < n; ++id) {
    const TokenType t = types_[id];
    if (t == TokenType::Control || t == TokenType::Unknown) special_.add(id, tokens_[id], false);
    if (t == TokenType::UserDefined) special_.add(id, tokens_[id], true);
  }
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_gguf(const GgufFile& gguf) {
  Vocab v;
  v.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (gguf.has("tokenizer.ggml.token_type")) {
    for (int64_t t : gguf.get_int_array("tokenizer.ggml.token_type")) v.types.push_back(static_cast<TokenType>(t));
    if (v.types.size() != v.tokens.size())
      throw ModelFileError(gguf.path() + ": tokenizer.ggml.token_type has " + std::to_string(v.types.size()) +
                           " entries for " + std::to_string(v.tokens.size()) + " tokens");
  } else {
    v.types.assign(v.tokens.size(), TokenType::Normal);
  }
  v.merges = gguf.get_string_array("tokenizer.ggml.merges");
  try {
    v.pre = BpePreTokenizer::from_gguf_name(gguf.opt_string("tokenizer.ggml.pre").value_or("default"));
  } catch (const std::invalid_argument& e) {
    throw ModelFileError(gguf.path() + ": tokenizer.ggml.pre: " + e.what());
  }
  v.bos_id = static_cast<int32_t>(gguf.opt_int("tokenizer.ggml.bos_token_id").value_or(-1));
  v.eos_id = static_cast<int32_t>(gguf.opt_int("tokenizer.ggml.eos_token_id").value_or(-1));
  // llama.cpp's default: the llama3 family adds BOS, the others do not, unless the file says.
  const bool default_add_bos = v.pre.kind == BpePreTokenizerKind::Llama3 && v.pre.ignore_merges;
  v.add_bos = gguf.opt_bool("tokenizer.ggml.add_bos_token").value_or(default_add_bos);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = gguf.opt_int(key)) v.extra_eog.push_back(static_cast<int32_t>(*id));
  }
  try {
    return std::make_unique<BpeTokenizer>(std::move(v));
  } catch (const std::runtime_error& e) {
    throw ModelFileError(gguf.path() + ": " + e.what());
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  for (const TextFragment& f : special_.split(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      continue;
    }
    for (const std::string& word : pre_.split(text.substr(f.begin, f.length))) {
      std::string mapped;
      mapped.reserve(word.size() * 2);
      for (unsigned char b : word) mapped += bpe_byte_to_utf8(b);
      encode_word(mapped, out);
    }
  }
  return out;
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  if (pre_.ignore_merges) {
    if (auto it = token_ids_.find(word); it != token_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols are byte ranges of `word`, linked in a list; each starts as one mapped character.
  struct Symbol {
    size_t start, len;
    int prev, next;
  };
  std::vector<Symbol> sym;
  for (size_t pos = 0; pos < word.size();) {
    const size_t len = std::min(utf8_sequence_length(static_cast<uint8_t>(word[pos])), word.size() - pos);
    const int idx = static_cast<int>(sym.size());
    sym.push_back({pos, len, idx - 1, -1});
    if (idx > 0) sym[idx - 1].next = idx;
    pos += len;
  }

  struct Pair {
    int32_t rank;
    int left, right;
    size_t len;  // bytes of both symbols when queued; a changed length means the pair is stale
  };
  auto worse = [](const Pair& a, const Pair& b) { return a.rank != b.rank ? a.rank > b.rank : a.left > b.left; };
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> queue(worse);
  std::string key;
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    key.assign(word, sym[left].start, sym[left].len);
    key += ' ';
    key.append(word, sym[right].start, sym[right].len);
    if (auto it = merge_rank_.find(key); it != merge_rank_.end())
      queue.push({it->second, left, right, sym[left].len + sym[right].len});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Pair p = queue.top();
    queue.pop();
    Symbol& l = sym[p.left];
    Symbol& r = sym[p.right];
    if (l.len == 0 || r.len == 0 || l.next != p.right || l.len + r.len != p.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = p.left;
    try_pair(l.prev, p.left);
    try_pair(p.left, l.next);
  }

  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
    const std::string_view piece(word.data() + sym[i].start, sym[i].len);
    if (auto it = token_ids_.find(piece); it != token_ids_.end()) {
      out.push_back(it->second);
      continue;
    }
    // Not a token (only with an inconsistent vocabulary): fall back to single-byte strings, as
    // llama.cpp does.
    for (char c : piece) {
      if (auto it = token_ids_.find(std::string_view(&c, 1)); it != token_ids_.end()) out.push_back(it->second);
    }
  }
}

std::string BpeTokenizer::token_to_piece(int32_t id, bool render_special) const {
  const std::string& text = tokens_.at(id);
  switch (types_[id]) {
    case TokenType::Control:
    case TokenType::Unknown:
      return render_special ? text : std::string();
    case TokenType::UserDefined:
      return text;
    case TokenType::Byte:
      if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>')
        return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
      return text;
    default: {
      std::string out;
      for (size_t pos = 0; pos < text.size();) {
        const size_t start = pos;
        const char32_t cp = utf8_decode(text, pos);
        const int b = bpe_codepoint_to_byte(cp);
        if (b >= 0) {
          out.push_back(static_cast<char>(b));
        } else {
          out.append(text, start, pos - start);  // not a mapped byte: keep the character itself
        }
      }
      return out;
    }
  }
}

}  // namespace hs
