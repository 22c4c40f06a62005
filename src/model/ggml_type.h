// Tensor element types as numbered in the GGUF format (ggml's enum), with their block layout.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace hs {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};

struct GgmlTypeInfo {
  const char* name;     // "Q4_K"
  int64_t block_elems;  // elements per block (1 for plain types)
  size_t block_bytes;   // bytes per block
  bool dequantizable;   // dequantize() supports it
};

// Info for a type id read from a file; nullptr when the id is unknown.
const GgmlTypeInfo* ggml_type_info(uint32_t type_id);
std::string ggml_type_name(GgmlType t);

// Bytes taken by n elements of type t (n must be a multiple of the block size).
size_t ggml_row_bytes(GgmlType t, int64_t n);

}  // namespace hs
