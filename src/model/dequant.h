// Dequantization of GGUF tensor data to float32.
#pragma once
#include <cstdint>

#include "model/ggml_type.h"

namespace hs {

// Converts n elements (a multiple of the type's block size) starting at src to float32.
// Throws std::invalid_argument for an unsupported type or a bad n.
// F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K take AVX2 code where the CPU has it
// (dequant_simd.h), with results identical to the portable code.
void dequantize(GgmlType type, const void* src, float* dst, int64_t n);

// The same in portable C++ only (the tests compare the two).
void dequantize_portable(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace hs
