// The formats that are read fast enough to stay packed in memory (kReadable: F16, BF16, Q4_0 to
// Q8_0, Q2_K to Q6_K), dequantized 32 elements at a time into AVX2 registers: shared by
// dequantize() (which stores them) and the CPU backend's matrix products (which multiply them in
// place).
//
// Each value is computed with the same float operations, in the same order, as the portable code
// in dequant.cpp (so bit for bit the same): the scales as float32 (F16C's conversion, exact; it
// quiets a signaling NaN, as the product every value takes with its scale does anyway), then
// products and sums each rounded. `product` keeps the compiler from fusing a product with the
// following sum into one multiply-add, whatever the flags.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "model/ggml_type.h"

namespace hs::simd {

#define HS_SIMD __attribute__((target("avx2,f16c")))

inline bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return yes;
}

HS_SIMD inline __m256 product(__m256 a, __m256 b) {
  __m256 p = _mm256_mul_ps(a, b);
  __asm__("" : "+x"(p));
  return p;
}

HS_SIMD inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// The 32 bytes of v as four groups of eight floats, signed or unsigned.
template <bool kSigned>
HS_SIMD inline void widen(__m256i v, __m256 out[4]) {
  const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int i = 0; i < 4; ++i)
    out[i] = _mm256_cvtepi32_ps(kSigned ? _mm256_cvtepi8_epi32(parts[i]) : _mm256_cvtepu8_epi32(parts[i]));
}

// The low nibbles of 16 bytes as elements 0-15, their high nibbles as 16-31 (Q4_0/Q4_1/Q5_0).
HS_SIMD inline __m256i nibbles16(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)), low4 = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), low4), _mm_and_si128(q, low4));
}

// The 32 bits of qh as bytes: 0x10 where bit i is set, else 0 (the 5th bit of Q5_0/Q5_1 element i).
HS_SIMD inline __m256i fifth_bits(const uint8_t* p) {
  int32_t qh;
  std::memcpy(&qh, p, 4);
  // Byte i of `spread` is byte i/8 of qh; its bit i%8 is compared with the same bit of `bit`.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(qh), _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}

// Each reader: kBytes per block of kChunks x 32 elements; unpack(block, c, v) puts chunk c's 32
// values in v[0..3]. (F16 and BF16 are read in blocks of 32 elements too.)

// Eight IEEE halves as floats, exact for every input, NaN payloads kept (signaling ones too, which
// F16C's conversion would quiet): fp16_to_f32 in dequant.cpp, eight at a time. F16C's conversion
// is exact for everything else, so it serves unless a NaN is among the eight.
HS_SIMD inline __m256 halves8(const uint8_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256 quick = _mm256_cvtph_ps(raw);
  if (__builtin_expect(_mm256_movemask_ps(_mm256_cmp_ps(quick, quick, _CMP_UNORD_Q)) == 0, 1)) return quick;
  const __m256i h = _mm256_cvtepu16_epi32(raw);
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
  const __m256i em = _mm256_and_si256(h, _mm256_set1_epi32(0x7fff));  // exponent and mantissa
  const __m256i rebias = _mm256_set1_epi32(112 << 23);
  __m256i bits = _mm256_add_epi32(_mm256_slli_epi32(em, 13), rebias);
  bits = _mm256_blendv_epi8(bits, _mm256_add_epi32(bits, rebias), _mm256_cmpgt_epi32(em, _mm256_set1_epi32(0x7bff)));
  const __m256 sub = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(em, 13), _mm256_set1_epi32(113 << 23))),
                                   _mm256_castsi256_ps(_mm256_set1_epi32(113 << 23)));
  const __m256 f = _mm256_blendv_ps(_mm256_castsi256_ps(bits), sub,
                                    _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x0400), em)));
  return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
}

// F16 and BF16 (64 bytes / 32): plain halves, or the upper halves of floats.
struct F16 {
  static constexpr int64_t kBytes = 64, kChunks = 1;
  HS_SIMD static void unpack(const uint8_t* x, int, __m256 v[4]) {
    for (int i = 0; i < 4; ++i) v[i] = halves8(x + 16 * i);
  }
};
struct BF16 {
  static constexpr int64_t kBytes = 64, kChunks = 1;
  HS_SIMD static void unpack(const uint8_t* x, int, __m256 v[4]) {
    for (int i = 0; i < 4; ++i) {
      const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16 * i)));
      v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    }
  }
};

// Q4_0 (18 bytes / 32): d:f16, qs[16]; value d * (q - 8).
struct Q4_0 {
  static constexpr int64_t kBytes = 18, kChunks = 1;
  HS_SIMD static void unpack(const uint8_t* x, int, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(half_at(x));
    widen<true>(_mm256_sub_epi8(nibbles16(x + 2), _mm256_set1_epi8(8)), v);
    for (int i = 0; i < 4; ++i) v[i] = product(d, v[i]);
  }
};

// Q4_1 (20 bytes / 32): d:f16, m:f16, qs[16]; value d * q + m.
struct Q4_1 {
  static constexpr int64_t kBytes = 20, kChunks = 1;
  HS_SIMD static void unpack(const uint8_t* x, int, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(half_at(x)), m = _mm256_set1_ps(half_at(x + 2));
    widen<false>(nibbles16(x + 4), v);
    for (int i = 0; i < 4; ++i) v[i] = _mm256_add_ps(product(d, v[i]), m);
  }
};

// Q5_0 (22 bytes / 32): d:f16, qh:u32 (bit j: the 5th bit of element j), qs[16]; value d * (q - 16).
struct Q5_0 {
  static constexpr int64_t kBytes = 22, kChunks = 1;
  HS_SIMD static void unpack(const uint8_t* x, int, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(half_at(x));
    widen<true>(_mm256_sub_epi8(_mm256_or_si256(nibbles16(x + 6), fifth_bits(x + 2)), _mm256_set1_epi8(16)), v);
    for (int i = 0; i < 4; ++i) v[i] = product(d, v[i]);
  }
};

// Q5_1 (24 bytes / 32): d:f16, m:f16, qh:u32, qs[16]; value d * q + m.
struct Q5_1 {
  static constexpr int64_t kBytes = 24, kChunks = 1;
  HS_SIMD static void unpack(const uint8_t* x, int, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(half_at(x)), m = _mm256_set1_ps(half_at(x + 2));
    widen<false>(_mm256_or_si256(nibbles16(x + 8), fifth_bits(x + 4)), v);
    for (int i = 0; i < 4; ++i) v[i] = _mm256_add_ps(product(d, v[i]), m);
  }
};

// Q8_0 (34 bytes / 32): d:f16, qs:int8[32]; value d * q.
struct Q8_0 {
  static constexpr int64_t kBytes = 34, kChunks = 1;
  HS_SIMD static void unpack(const uint8_t* x, int, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(half_at(x));
    widen<true>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 2)), v);
    for (int i = 0; i < 4; ++i) v[i] = product(d, v[i]);
  }
};

// Chunk j's 2-bit fields of Q2_K/Q3_K quants: field j%4 of qs[(j/4)*32 + l], l = 0..31.
HS_SIMD inline __m256i two_bits(const uint8_t* qs, int j) {
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + (j / 4) * 32));
  return _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (j % 4))), _mm256_set1_epi8(3));
}

// Q3_K's sixteen 6-bit scales (stored +32) in 12 bytes: scale k's low 4 bits are nibble k/8 of
// byte k%8, its top 2 bits field k/4 of byte 8 + k%4. (dequant.cpp's portable code uses this too.)
inline int q3_k_scale(const uint8_t* sb, int k) {
  return ((k < 8 ? sb[k] & 0x0f : sb[k - 8] >> 4) | (((sb[8 + k % 4] >> (2 * (k / 4))) & 3) << 4)) - 32;
}

// Q2_K (84 bytes / 256): scales[16], qs[64], d:f16, dmin:f16. Chunk j takes 2-bit field j%4 of
// qs[(j/4)*32 + l]; each 16 elements have a scale byte (low nibble scale, high nibble min), byte
// 2j for the first 16, 2j+1 for the next; value (d * sc) * q - (dmin * mn).
struct Q2_K {
  static constexpr int64_t kBytes = 84, kChunks = 8;
  HS_SIMD static void unpack(const uint8_t* x, int j, __m256 v[4]) {
    widen<false>(two_bits(x + 16, j), v);
    const float d = half_at(x + 80), dmin = half_at(x + 82);
    for (int h = 0; h < 2; ++h) {
      const uint8_t sc = x[2 * j + h];
      const __m256 dl = _mm256_set1_ps(d * static_cast<float>(sc & 0x0f));
      const __m256 ml = _mm256_set1_ps(dmin * static_cast<float>(sc >> 4));
      for (int i = 2 * h; i < 2 * h + 2; ++i) v[i] = _mm256_sub_ps(product(dl, v[i]), ml);
    }
  }
};

// Q3_K (110 bytes / 256): hmask[32], qs[64], scales[12], d:f16. Chunk j: low 2 bits as Q2_K's, the
// third from bit j of hmask[l]; value (d * scale) * (q - 4), a scale (q3_k_scale) for each 16
// elements.
struct Q3_K {
  static constexpr int64_t kBytes = 110, kChunks = 8;
  HS_SIMD static void unpack(const uint8_t* x, int j, __m256 v[4]) {
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    const __m256i low = two_bits(x + 32, j);
    const __m256i high = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(j)), _mm256_set1_epi8(1));
    widen<true>(_mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 2)), _mm256_set1_epi8(4)), v);
    const uint8_t* sb = x + 96;
    const float d = half_at(x + 108);
    for (int h = 0; h < 2; ++h) {
      const __m256 dl = _mm256_set1_ps(d * static_cast<float>(q3_k_scale(sb, 2 * j + h)));
      for (int i = 2 * h; i < 2 * h + 2; ++i) v[i] = product(dl, v[i]);
    }
  }
};

// The 12 scale bytes of Q4_K/Q5_K hold eight 6-bit scales and eight 6-bit mins:
// j < 4: scale = b[j] & 63, min = b[j+4] & 63; j >= 4: scale = (b[j+4] & 15) | (b[j-4] >> 6) << 4,
// min = (b[j+4] >> 4) | (b[j] >> 6) << 4. (dequant.cpp's portable code uses this too.)
inline void k_scale_min(const uint8_t* b, int j, int& sc, int& mn) {
  sc = j < 4 ? b[j] & 63 : (b[j + 4] & 0x0f) | ((b[j - 4] >> 6) << 4);
  mn = j < 4 ? b[j + 4] & 63 : (b[j + 4] >> 4) | ((b[j] >> 6) << 4);
}

// Q4_K (144 bytes / 256): d:f16, dmin:f16, scales[12], qs[128]; sub-block j takes nibble j%2 of
// qs[(j/2)*32 + l]; value (d * sc) * q - (dmin * mn). Q5_K (176 bytes / 256) puts qh[32] before
// qs, whose bit j of qh[l] is the 5th bit of element l of sub-block j.
template <bool kFifthBit>
struct QK45 {
  static constexpr int64_t kBytes = kFifthBit ? 176 : 144, kChunks = 8;
  HS_SIMD static void unpack(const uint8_t* x, int j, __m256 v[4]) {
    int sc, mn;
    k_scale_min(x + 4, j, sc, mn);
    const __m256 dl = _mm256_set1_ps(half_at(x) * static_cast<float>(sc));
    const __m256 ml = _mm256_set1_ps(half_at(x + 2) * static_cast<float>(mn));
    const uint8_t* qs = x + (kFifthBit ? 48 : 16);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + (j / 2) * 32));
    __m256i e = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(4 * (j % 2))), _mm256_set1_epi8(0x0f));
    if constexpr (kFifthBit) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16));
      const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j)), _mm256_set1_epi8(1));
      e = _mm256_or_si256(e, _mm256_slli_epi16(bit, 4));
    }
    widen<false>(e, v);
    for (int i = 0; i < 4; ++i) v[i] = _mm256_sub_ps(product(dl, v[i]), ml);
  }
};
using Q4_K = QK45<false>;
using Q5_K = QK45<true>;

// Q6_K (210 bytes / 256): ql[128], qh[64], scales:int8[16], d:f16. Chunk j is quarter j%4 of half
// j/4: low 4 bits from nibble (j%4)/2 of ql[half*64 + (j%2)*32 + l], high 2 bits from field j%4
// of qh[half*32 + l]; value (d * scale) * (q - 32), a scale for each 16 elements.
struct Q6_K {
  static constexpr int64_t kBytes = 210, kChunks = 8;
  HS_SIMD static void unpack(const uint8_t* x, int j, __m256 v[4]) {
    const int half = j / 4, quarter = j % 4;
    const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + half * 64 + (quarter % 2) * 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 128 + half * 32));
    const __m256i low = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (quarter / 2))), _mm256_set1_epi8(0x0f));
    const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * quarter)), _mm256_set1_epi8(0x03));
    widen<true>(_mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), _mm256_set1_epi8(32)), v);
    const auto* scales = reinterpret_cast<const int8_t*>(x + 192) + half * 8 + quarter * 2;
    const float d = half_at(x + 208);
    const __m256 d0 = _mm256_set1_ps(d * static_cast<float>(scales[0])), d1 = _mm256_set1_ps(d * static_cast<float>(scales[1]));
    v[0] = product(d0, v[0]);
    v[1] = product(d0, v[1]);
    v[2] = product(d1, v[2]);
    v[3] = product(d1, v[3]);
  }
};

// f(Reader{}) (a bool) for a type that has a reader; false for one that has none.
template <class F>
bool with_reader(GgmlType t, F&& f) {
  switch (t) {
    case GgmlType::F16: return f(F16{});
    case GgmlType::BF16: return f(BF16{});
    case GgmlType::Q4_0: return f(Q4_0{});
    case GgmlType::Q4_1: return f(Q4_1{});
    case GgmlType::Q5_0: return f(Q5_0{});
    case GgmlType::Q5_1: return f(Q5_1{});
    case GgmlType::Q8_0: return f(Q8_0{});
    case GgmlType::Q2_K: return f(Q2_K{});
    case GgmlType::Q3_K: return f(Q3_K{});
    case GgmlType::Q4_K: return f(Q4_K{});
    case GgmlType::Q5_K: return f(Q5_K{});
    case GgmlType::Q6_K: return f(Q6_K{});
    default: return false;
  }
}

// The types with_reader has a reader for.
inline constexpr GgmlType kReadable[] = {GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                                         GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K,
                                         GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// Elements in one of a reader's blocks.
template <class Reader>
constexpr int64_t kBlockElems = 32 * Reader::kChunks;

// Whether type t has a reader and rows of `cols` elements are whole blocks of it: the matrices
// the loader keeps packed (on a CPU with AVX2 and F16C).
inline bool reads_rows(GgmlType t, int64_t cols) {
  return with_reader(t, [&](auto reader) { return cols % kBlockElems<decltype(reader)> == 0; });
}

}  // namespace hs::simd
