// bf16 on the host for the CUDA tests: float -> bf16 bits as the device's __float2bfloat16_rn
// rounds (to nearest even; NaN stays NaN), and back. Plain C++17 (nvcc-compiled tests use it).
#pragma once
#include <cstdint>
#include <cstring>

namespace hs::test {

inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float from_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace hs::test
