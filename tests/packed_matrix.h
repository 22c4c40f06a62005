// Random packed matrices (the file forms of simd::kReadable) with sane scales, for the tests and
// benchmarks of the CPU backend's packed products.
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "model/ggml_type.h"
#include "model/weights.h"

namespace hs::test {

// Where each block keeps its fp16 scales (the rest of a block is quants, or 6-bit and 8-bit scales).
inline std::vector<size_t> half_scales(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: return {0, 2};  // d and m (dmin)
    case GgmlType::Q6_K: return {208};
    case GgmlType::Q2_K: return {80, 82};
    case GgmlType::Q3_K: return {108};
    default: return {0};  // Q4_0, Q5_0, Q8_0
  }
}

// rows x cols of random blocks: random bytes, the fp16 scales drawn between 2^-9 and 2^-3 of
// either sign (F16 and BF16: random values between 2^-7 and 2^-1).
inline Matrix random_packed(GgmlType type, int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.type = type;
  m.blocks.resize(rows * m.row_bytes());
  for (auto& b : m.blocks) b = static_cast<uint8_t>(rng());
  if (type == GgmlType::F16 || type == GgmlType::BF16) {  // every value a half
    for (size_t at = 0; at < m.blocks.size(); at += 2) {
      const uint64_t e = rng() % 7;
      const uint16_t h = static_cast<uint16_t>(type == GgmlType::F16 ? (rng() & 0x83ff) | ((8 + e) << 10)
                                                                      : (rng() & 0x807f) | ((120 + e) << 7));
      std::memcpy(&m.blocks[at], &h, 2);
    }
    return m;
  }
  const size_t block = ggml_type_info(static_cast<uint32_t>(type))->block_bytes;
  for (size_t at = 0; at < m.blocks.size(); at += block)
    for (size_t offset : half_scales(type)) {
      const uint16_t h = static_cast<uint16_t>((rng() & 0x83ff) | ((6 + rng() % 7) << 10));
      std::memcpy(&m.blocks[at + offset], &h, 2);
    }
  return m;
}

}  // namespace hs::test
