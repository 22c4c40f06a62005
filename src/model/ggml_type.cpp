// Type table for the ggml tensor types a GGUF file may name. Block sizes and bytes follow
// ggml's block structs (ggml-common.h); they define how tensor byte sizes are computed.
#include "model/ggml_type.h"

#include <stdexcept>

namespace hs {

namespace {

constexpr int64_t kQK = 32;    // elements per block of the "legacy" quant types
constexpr int64_t kQKK = 256;  // elements per super-block of the K-quant types

struct Entry {
  uint32_t id;
  GgmlTypeInfo info;
};

// Bytes per block, spelled as the sum of the block's fields so each size can be checked
// against its layout at a glance.
constexpr Entry kTable[] = {
    {0, {"F32", 1, 4, true}},
    {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", kQK, 2 + kQK / 2, true}},                          // d, qs
    {3, {"Q4_1", kQK, 2 + 2 + kQK / 2, true}},                      // d, m, qs
    {6, {"Q5_0", kQK, 2 + 4 + kQK / 2, true}},                      // d, qh, qs
    {7, {"Q5_1", kQK, 2 + 2 + 4 + kQK / 2, true}},                  // d, m, qh, qs
    {8, {"Q8_0", kQK, 2 + kQK, true}},                              // d, qs
    {9, {"Q8_1", kQK, 2 + 2 + kQK, true}},                          // d, s, qs (fp16 d and s)
    {10, {"Q2_K", kQKK, kQKK / 16 + kQKK / 4 + 2 + 2, true}},       // scales, qs, d, dmin
    {11, {"Q3_K", kQKK, kQKK / 8 + kQKK / 4 + 12 + 2, true}},       // hmask, qs, scales, d
    {12, {"Q4_K", kQKK, 2 + 2 + 12 + kQKK / 2, true}},              // d, dmin, scales, qs
    {13, {"Q5_K", kQKK, 2 + 2 + 12 + kQKK / 8 + kQKK / 2, true}},   // d, dmin, scales, qh, qs
    {14, {"Q6_K", kQKK, kQKK / 2 + kQKK / 4 + kQKK / 16 + 2, true}}, // ql, qh, scales, d
    {15, {"Q8_K", kQKK, 4 + kQKK + 2 * (kQKK / 16), true}},         // f32 d, qs, i16 bsums
    {24, {"I8", 1, 1, false}},
    {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},
    {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},
    {30, {"BF16", 1, 2, true}},
};

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type_id) {
  for (const Entry& e : kTable)
    if (e.id == type_id) return &e.info;
  return nullptr;
}

std::string ggml_type_name(GgmlType t) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t));
  return info ? info->name : "type#" + std::to_string(static_cast<uint32_t>(t));
}

size_t ggml_row_bytes(GgmlType t, int64_t n) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t));
  if (!info) throw std::invalid_argument("ggml_row_bytes: unknown type " + ggml_type_name(t));
  if (n < 0 || n % info->block_elems != 0)
    throw std::invalid_argument("ggml_row_bytes: " + std::to_string(n) + " elements is not a multiple of the " +
                                info->name + " block size " + std::to_string(info->block_elems));
  return static_cast<size_t>(n / info->block_elems) * info->block_bytes;
}

}  // namespace hs
