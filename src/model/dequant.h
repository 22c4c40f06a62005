// Dequantization of GGUF tensor data to float32.
#pragma once
#include <cstdint>

#include "model/ggml_type.h"

namespace hs {

// Converts n elements (a multiple of the type's block size) starting at src to float32.
// Throws std::invalid_argument for an unsupported type or a bad n.
void dequantize(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace hs
