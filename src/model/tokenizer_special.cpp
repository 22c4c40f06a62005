#include "model/tokenizer_special.h"

#include <algorithm>
#include <map>

namespace hs {

void SpecialTokenSplitter::add(int32_t id, const std::string& text, bool always) {
  if (text.empty()) return;
  if (node_entry_.empty()) node_entry_.push_back(-1);  // the root
  uint32_t node = 0;
  for (unsigned char ch : text) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | ch;
    auto it = edges_.find(key);
    if (it == edges_.end()) {
      const auto child = static_cast<uint32_t>(node_entry_.size());
      node_entry_.push_back(-1);
      it = edges_.emplace(key, child).first;
    }
    node = it->second;
  }
  // Two tokens with the same text: the first one added (lower id) wins, as a text lookup would.
  if (node_entry_[node] >= 0) return;
  node_entry_[node] = static_cast<int32_t>(entries_.size());
  entries_.push_back({id, text, always});
}

std::vector<TextFragment> SpecialTokenSplitter::split(std::string_view text, bool parse_special) const {
  std::vector<TextFragment> out;
  if (text.empty()) return out;

  // Every occurrence of every eligible special text, keyed by the order llama.cpp would find it:
  // longer texts first, then lower id, then position.
  struct Occurrence {
    size_t len;
    int32_t id;
    size_t pos;
  };
  std::vector<Occurrence> occ;
  if (!entries_.empty()) {
    for (size_t i = 0; i < text.size(); ++i) {
      uint32_t node = 0;
      for (size_t j = i; j < text.size(); ++j) {
        auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[j]));
        if (it == edges_.end()) break;
        node = it->second;
        const int32_t e = node_entry_[node];
        if (e >= 0 && (parse_special || entries_[e].always)) occ.push_back({j + 1 - i, entries_[e].id, i});
      }
    }
  }
  std::sort(occ.begin(), occ.end(), [](const Occurrence& a, const Occurrence& b) {
    if (a.len != b.len) return a.len > b.len;
    if (a.id != b.id) return a.id < b.id;
    return a.pos < b.pos;
  });

  // Claim occurrences that lie wholly in still-unclaimed text and do not overlap the previous
  // match of the same token (the reference resumes its search after each match).
  std::map<size_t, std::pair<size_t, int32_t>> claimed;  // begin -> (end, token)
  int32_t cur_id = -1;
  size_t cur_len = 0, last_end = 0;
  for (const Occurrence& o : occ) {
    if (o.id != cur_id || o.len != cur_len) {
      cur_id = o.id;
      cur_len = o.len;
      last_end = 0;
    }
    if (o.pos < last_end) continue;
    const size_t end = o.pos + o.len;
    auto next = claimed.lower_bound(o.pos);
    if (next != claimed.end() && next->first < end) continue;
    if (next != claimed.begin() && std::prev(next)->second.first > o.pos) continue;
    claimed.emplace(o.pos, std::make_pair(end, o.id));
    last_end = end;
  }

  size_t at = 0;
  for (const auto& [begin, end_id] : claimed) {
    if (begin > at) out.push_back({-1, at, begin - at});
    out.push_back({end_id.second, begin, end_id.first - begin});
    at = end_id.first;
  }
  if (at < text.size()) out.push_back({-1, at, text.size() - at});
  return out;
}

}  // namespace hs
