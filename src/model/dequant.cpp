// Dequantization of ggml block formats to float32.
//
// Each routine follows ggml's block layout (see the layout comment above each one) and does
// its float arithmetic in the same order and precision as the reference (gguf-py's numpy
// dequantizers, which match ggml's C code): products and sums are each rounded to float32.
// Tests compare bit for bit. With fp16 scales times small integers most products are exact
// anyway, but contraction of a*b+c into a fused multiply-add (which rounds once) is switched off
// for this file so that the results can never depend on compiler flags (-march, -ffp-contract).
//
// The host is assumed little-endian, like the GGUF files we read (v3 big-endian files are
// rejected by the reader).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "model/dequant.h"

#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include "model/dequant_simd.h"

namespace hs {

namespace {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);  // blocks have odd sizes, so fields are often unaligned
  return v;
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// IEEE half -> float, exact for every input (subnormals, infinities, NaN payloads kept).
// Written without branches on the value so loops over many halves vectorize.
inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;  // exponent and mantissa
  // Normal numbers: move the 5-bit exponent into the 8-bit field and rebias 15 -> 127.
  uint32_t bits = (em << 13) + (112u << 23);
  // Inf/NaN (exponent 31): the field must become 255, so add the bias once more.
  bits = em >= 0x7c00u ? bits + (112u << 23) : bits;
  float f = std::bit_cast<float>(bits);
  // Subnormals (and zero): m * 2^-24. Build 2^-14 * (1 + m/1024) and subtract 2^-14; exact.
  const float sub = std::bit_cast<float>((em << 13) + (113u << 23)) - std::bit_cast<float>(113u << 23);
  f = em < 0x0400u ? sub : f;
  return std::bit_cast<float>(std::bit_cast<uint32_t>(f) | sign);
}

inline float load_f16(const uint8_t* p) { return fp16_to_f32(load_u16(p)); }

void dq_f32(const uint8_t* x, float* y, int64_t n) { std::memcpy(y, x, static_cast<size_t>(n) * 4); }

void dq_f16(const uint8_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(load_u16(x + 2 * i));
}

// bfloat16 is the upper half of a float32.
void dq_bf16(const uint8_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::bit_cast<float>(static_cast<uint32_t>(load_u16(x + 2 * i)) << 16);
}

// Q4_0 (18 bytes / 32): d:f16, qs[16]. Element j is the low nibble of qs[j], element j+16 the
// high nibble; value d * (q - 8).
void dq_q4_0(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 18, y += 32) {
    const float d = load_f16(x);
    const uint8_t* qs = x + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
      y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

// Q4_1 (20 bytes / 32): d:f16, m:f16, qs[16] as in Q4_0; value d * q + m.
void dq_q4_1(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 20, y += 32) {
    const float d = load_f16(x), m = load_f16(x + 2);
    const uint8_t* qs = x + 4;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
      y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

// Q5_0 (22 bytes / 32): d:f16, qh:u32 (bit j = 5th bit of element j), qs[16] as in Q4_0;
// value d * (q - 16).
void dq_q5_0(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 22, y += 32) {
    const float d = load_f16(x);
    const uint32_t qh = load_u32(x + 2);
    const uint8_t* qs = x + 6;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      y[j] = d * static_cast<float>(lo - 16);
      y[j + 16] = d * static_cast<float>(hi - 16);
    }
  }
}

// Q5_1 (24 bytes / 32): d:f16, m:f16, qh:u32, qs[16]; value d * q + m.
void dq_q5_1(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 24, y += 32) {
    const float d = load_f16(x), m = load_f16(x + 2);
    const uint32_t qh = load_u32(x + 4);
    const uint8_t* qs = x + 8;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      y[j] = d * static_cast<float>(lo) + m;
      y[j + 16] = d * static_cast<float>(hi) + m;
    }
  }
}

// Q8_0 (34 bytes / 32): d:f16, qs:int8[32]; value d * q.
// Q8_1 (36 bytes / 32): d:f16, s:f16 (a precomputed sum, not needed here), qs:int8[32].
template <int kHeader>
void dq_q8(const uint8_t* x, float* y, int64_t nb) {
  constexpr int kBytes = kHeader + 32;
  for (int64_t b = 0; b < nb; ++b, x += kBytes, y += 32) {
    const float d = load_f16(x);
    const int8_t* qs = reinterpret_cast<const int8_t*>(x + kHeader);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(qs[j]);
  }
}

// Q2_K (84 bytes / 256): scales[16], qs[64], d:f16, dmin:f16.
// The 256 elements are two halves of 128; in half c, element s*32 + l is 2-bit field s of
// qs[c*32 + l]. Each group of 16 elements has scale byte (low nibble: scale, high: min);
// value (d * sc) * q - (dmin * mn).
void dq_q2_k(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 84, y += 256) {
    const uint8_t* scales = x;
    const uint8_t* qs = x + 16;
    const float d = load_f16(x + 80), dmin = load_f16(x + 82);
    for (int c = 0; c < 2; ++c) {
      for (int s = 0; s < 4; ++s) {
        for (int h = 0; h < 2; ++h) {
          const uint8_t sc = scales[c * 8 + s * 2 + h];
          const float dl = d * static_cast<float>(sc & 0x0f);
          const float ml = dmin * static_cast<float>(sc >> 4);
          const uint8_t* q = qs + c * 32 + h * 16;
          float* out = y + c * 128 + s * 32 + h * 16;
          for (int l = 0; l < 16; ++l) out[l] = dl * static_cast<float>((q[l] >> (2 * s)) & 3) - ml;
        }
      }
    }
  }
}

// Q3_K (110 bytes / 256): hmask[32], qs[64], scales[12], d:f16.
// Low 2 bits as in Q2_K; the high bit of element e is bit e/32 of hmask[e%32], and a CLEAR
// bit means "subtract 4" (q = low - 4 * !high, range -4..3). Sixteen 6-bit signed scales in
// scales[12] (simd::q3_k_scale, shared with the AVX2 reader).
void dq_q3_k(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 110, y += 256) {
    const uint8_t* hmask = x;
    const uint8_t* qs = x + 32;
    const uint8_t* sb = x + 96;
    const float d = load_f16(x + 108);
    float dl[16];
    for (int j = 0; j < 16; ++j) dl[j] = d * static_cast<float>(simd::q3_k_scale(sb, j));
    for (int c = 0; c < 2; ++c) {
      for (int s = 0; s < 4; ++s) {
        const int group = c * 4 + s;  // which 32-element run, also the hmask bit index
        for (int l = 0; l < 32; ++l) {
          const int low = (qs[c * 32 + l] >> (2 * s)) & 3;
          const int high = (hmask[l] >> group) & 1;
          const int q = low - (high ? 0 : 4);
          y[group * 32 + l] = dl[group * 2 + l / 16] * static_cast<float>(q);
        }
      }
    }
  }
}

// Q4_K (144 bytes / 256): d:f16, dmin:f16, scales[12], qs[128]. Eight sub-blocks of 32;
// sub-block j takes nibble j%2 of qs[(j/2)*32 + l]; value (d * sc) * q - (dmin * mn).
void dq_q4_k(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 144, y += 256) {
    const float d = load_f16(x), dmin = load_f16(x + 2);
    const uint8_t* sb = x + 4;
    const uint8_t* qs = x + 16;
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      simd::k_scale_min(sb, j, sc, mn);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
      const uint8_t* q = qs + (j / 2) * 32;
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) y[j * 32 + l] = dl * static_cast<float>((q[l] >> shift) & 0x0f) - ml;
    }
  }
}

// Q5_K (176 bytes / 256): d:f16, dmin:f16, scales[12], qh[32], qs[128]. As Q4_K, plus a 5th
// bit: bit j of qh[l] for element l of sub-block j.
void dq_q5_k(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 176, y += 256) {
    const float d = load_f16(x), dmin = load_f16(x + 2);
    const uint8_t* sb = x + 4;
    const uint8_t* qh = x + 16;
    const uint8_t* qs = x + 48;
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      simd::k_scale_min(sb, j, sc, mn);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
      const uint8_t* q = qs + (j / 2) * 32;
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4);
        y[j * 32 + l] = dl * static_cast<float>(v) - ml;
      }
    }
  }
}

// Q6_K (210 bytes / 256): ql[128], qh[64], scales:int8[16], d:f16. Two halves of 128; in half c,
// element r has low 4 bits = nibble r/64 of ql[c*64 + r%64] and high 2 bits = field r/32 of
// qh[c*32 + r%32]; value (d * scale[e/16]) * (q - 32).
void dq_q6_k(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 210, y += 256) {
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const int8_t* scales = reinterpret_cast<const int8_t*>(x + 192);
    const float d = load_f16(x + 208);
    for (int c = 0; c < 2; ++c) {
      for (int g = 0; g < 8; ++g) {  // 16-element scale groups within the half
        const float dl = d * static_cast<float>(scales[c * 8 + g]);
        for (int k = 0; k < 16; ++k) {
          const int r = g * 16 + k;
          const int low = (ql[c * 64 + r % 64] >> (4 * (r / 64))) & 0x0f;
          const int high = (qh[c * 32 + r % 32] >> (2 * (r / 32))) & 3;
          y[c * 128 + r] = dl * static_cast<float>((low | (high << 4)) - 32);
        }
      }
    }
  }
}

// Q8_K (292 bytes / 256): d:f32, qs:int8[256], bsums:int16[16] (sums, not needed); value d * q.
void dq_q8_k(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 292, y += 256) {
    const float d = std::bit_cast<float>(load_u32(x));
    const int8_t* qs = reinterpret_cast<const int8_t*>(x + 4);
    for (int j = 0; j < 256; ++j) y[j] = d * static_cast<float>(qs[j]);
  }
}

// The formats with an AVX2 reader (dequant_simd.h): the same values, 32 at a time.
template <class Reader>
HS_SIMD void dq_simd(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += Reader::kBytes)
    for (int c = 0; c < Reader::kChunks; ++c, y += 32) {
      __m256 v[4];
      Reader::unpack(x, c, v);
      for (int i = 0; i < 4; ++i) _mm256_storeu_ps(y + 8 * i, v[i]);
    }
}

void dequantize(GgmlType type, const void* src, float* dst, int64_t n, bool vectorized) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
  if (!info || !info->dequantizable)
    throw std::invalid_argument("dequantize: unsupported type " + ggml_type_name(type));
  if (n < 0 || n % info->block_elems != 0)
    throw std::invalid_argument("dequantize: " + std::to_string(n) + " elements is not a multiple of the " +
                                info->name + " block size " + std::to_string(info->block_elems));
  const auto* x = static_cast<const uint8_t*>(src);
  const int64_t nb = n / info->block_elems;
  if (vectorized && simd::have_avx2() && simd::with_reader(type, [&](auto reader) {
        using Reader = decltype(reader);
        if (n % simd::kBlockElems<Reader> != 0) return false;  // F16 or BF16 of odd length
        dq_simd<Reader>(x, dst, n / simd::kBlockElems<Reader>);
        return true;
      }))
    return;
  switch (type) {
    case GgmlType::F32: return dq_f32(x, dst, n);
    case GgmlType::F16: return dq_f16(x, dst, n);
    case GgmlType::BF16: return dq_bf16(x, dst, n);
    case GgmlType::Q4_0: return dq_q4_0(x, dst, nb);
    case GgmlType::Q4_1: return dq_q4_1(x, dst, nb);
    case GgmlType::Q5_0: return dq_q5_0(x, dst, nb);
    case GgmlType::Q5_1: return dq_q5_1(x, dst, nb);
    case GgmlType::Q8_0: return dq_q8<2>(x, dst, nb);
    case GgmlType::Q8_1: return dq_q8<4>(x, dst, nb);
    case GgmlType::Q2_K: return dq_q2_k(x, dst, nb);
    case GgmlType::Q3_K: return dq_q3_k(x, dst, nb);
    case GgmlType::Q4_K: return dq_q4_k(x, dst, nb);
    case GgmlType::Q5_K: return dq_q5_k(x, dst, nb);
    case GgmlType::Q6_K: return dq_q6_k(x, dst, nb);
    case GgmlType::Q8_K: return dq_q8_k(x, dst, nb);
    default: break;
  }
  throw std::invalid_argument("dequantize: unsupported type " + ggml_type_name(type));
}

}  // namespace

void dequantize(GgmlType type, const void* src, float* dst, int64_t n) { dequantize(type, src, dst, n, true); }

void dequantize_portable(GgmlType type, const void* src, float* dst, int64_t n) {
  dequantize(type, src, dst, n, false);
}

}  // namespace hs
