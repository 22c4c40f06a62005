#include "backend/backend.h"

namespace hs {

int64_t Batch::total_tokens() const {
  int64_t n = 0;
  for (const auto& c : chunks) n += static_cast<int64_t>(c.tokens.size());
  return n;
}

int64_t Logits::last_row(size_t chunk, const Batch& b) const {
  const SeqChunk& c = b.chunks.at(chunk);
  return first_row.at(chunk) + (c.all_logits ? static_cast<int64_t>(c.tokens.size()) - 1 : 0);
}

}  // namespace hs
