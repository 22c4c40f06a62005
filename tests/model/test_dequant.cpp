// Dequantization: bit-exact against gguf-py's numpy reference (golden files written by
// scripts/make-dequant-golden.py), on synthetic blocks of every supported type and on real
// tensors of the test models.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/dequant.h"
#include "model/dequant_simd.h"
#include "model/gguf.h"
#include "test_util.h"

namespace hs {
namespace {

namespace fs = std::filesystem;

std::string golden_dir() { return test::source_path("tests/data/dequant"); }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<float> read_floats(const std::string& path) {
  const std::vector<uint8_t> b = read_bytes(path);
  std::vector<float> f(b.size() / 4);
  std::memcpy(f.data(), b.data(), f.size() * 4);
  return f;
}

GgmlType type_by_name(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id)
    if (const GgmlTypeInfo* info = ggml_type_info(id); info && name == info->name) return static_cast<GgmlType>(id);
  throw std::invalid_argument("no type " + name);
}

std::string hex_bits(float f) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", std::bit_cast<uint32_t>(f));
  return buf;
}

// Bit equality, except that any NaN matches any NaN (payload handling is not specified).
::testing::AssertionResult same_floats(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << " (" << hex_bits(got[i])
                                           << "), want " << want[i] << " (" << hex_bits(want[i]) << ")";
  }
  return ::testing::AssertionSuccess();
}

class DequantGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(DequantGolden, MatchesReference) {
  const std::string name = GetParam();
  const GgmlType type = type_by_name(name);
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
  const std::vector<uint8_t> raw = read_bytes(golden_dir() + "/" + name + ".bin");
  const std::vector<float> want = read_floats(golden_dir() + "/" + name + ".f32");
  ASSERT_FALSE(want.empty());
  const auto n = static_cast<int64_t>(want.size());
  ASSERT_EQ(raw.size(), ggml_row_bytes(type, n)) << "golden file sizes disagree with the type table";
  ASSERT_TRUE(info->dequantizable);
  std::vector<float> got(want.size(), -12345.0f);
  dequantize(type, raw.data(), got.data(), n);
  EXPECT_TRUE(same_floats(got, want)) << name;
}

INSTANTIATE_TEST_SUITE_P(Dequant, DequantGolden,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
                                           "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"),
                         [](const auto& info) { return std::string(info.param); });

// Every half-precision bit pattern against a slow conversion written from the IEEE definition.
TEST(Dequant, F16AllBitPatterns) {
  std::vector<uint16_t> halves(65536);
  for (uint32_t i = 0; i < 65536; ++i) halves[i] = static_cast<uint16_t>(i);
  std::vector<float> got(65536);
  dequantize(GgmlType::F16, halves.data(), got.data(), 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    const int sign = (h >> 15) & 1, exp = (h >> 10) & 31, mant = h & 1023;
    float want;
    if (exp == 31) want = mant ? NAN : INFINITY;
    else if (exp == 0) want = std::ldexp(static_cast<float>(mant), -24);
    else want = std::ldexp(static_cast<float>(1024 + mant), exp - 25);
    if (sign) want = -want;
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got[h])) << h;
      // The payload is kept: the mantissa moves to the top of the float mantissa.
      ASSERT_EQ(std::bit_cast<uint32_t>(got[h]), (static_cast<uint32_t>(sign) << 31) | 0x7f800000u | (mant << 13)) << h;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(got[h]), std::bit_cast<uint32_t>(want)) << "half 0x" << std::hex << h;
    }
  }
}

// simd::kReadable names exactly the types simd::with_reader has a reader for (the tests below and
// test_packed_weights go through the list).
TEST(Dequant, ReadableListsEveryReader) {
  for (uint32_t id = 0; id < 64; ++id) {
    const auto type = static_cast<GgmlType>(id);
    const bool listed = std::find(std::begin(simd::kReadable), std::end(simd::kReadable), type) != std::end(simd::kReadable);
    EXPECT_EQ(simd::with_reader(type, [](auto) { return true; }), listed) << "type id " << id;
  }
}

// The types of simd::kReadable (F16, BF16, Q4_0 to Q8_0, Q2_K to Q6_K) take AVX2 code where the CPU has it
// (the golden tests above and F16AllBitPatterns below check that path); the portable code must give
// the same floats. Random bytes, so every scale bit pattern turns up:
// bit-equal, or NaN in both (which NaN a product of two NaNs keeps depends on operand order).
TEST(Dequant, VectorizedEqualsPortable) {
  std::mt19937 rng(7);
  for (GgmlType type : simd::kReadable) {
    const int64_t n = 256 * 513;
    std::vector<uint8_t> raw(ggml_row_bytes(type, n));
    for (auto& b : raw) b = static_cast<uint8_t>(rng());
    std::vector<float> fast(n), portable(n);
    dequantize(type, raw.data(), fast.data(), n);
    dequantize_portable(type, raw.data(), portable.data(), n);
    int64_t nans = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(portable[i])) {
        ++nans;
        ASSERT_TRUE(std::isnan(fast[i])) << ggml_type_name(type) << " element " << i;
      } else {
        ASSERT_EQ(std::bit_cast<uint32_t>(fast[i]), std::bit_cast<uint32_t>(portable[i]))
            << ggml_type_name(type) << " element " << i;
      }
    }
    EXPECT_GT(nans, 0);  // the special scales were among them
  }
}

TEST(Dequant, TypeTable) {
  struct Row { GgmlType t; const char* name; int64_t elems; size_t bytes; };
  const Row rows[] = {
      {GgmlType::F32, "F32", 1, 4},     {GgmlType::F16, "F16", 1, 2},      {GgmlType::BF16, "BF16", 1, 2},
      {GgmlType::Q4_0, "Q4_0", 32, 18}, {GgmlType::Q4_1, "Q4_1", 32, 20},  {GgmlType::Q5_0, "Q5_0", 32, 22},
      {GgmlType::Q5_1, "Q5_1", 32, 24}, {GgmlType::Q8_0, "Q8_0", 32, 34},  {GgmlType::Q8_1, "Q8_1", 32, 36},
      {GgmlType::Q2_K, "Q2_K", 256, 84}, {GgmlType::Q3_K, "Q3_K", 256, 110}, {GgmlType::Q4_K, "Q4_K", 256, 144},
      {GgmlType::Q5_K, "Q5_K", 256, 176}, {GgmlType::Q6_K, "Q6_K", 256, 210}, {GgmlType::Q8_K, "Q8_K", 256, 292},
      {GgmlType::I8, "I8", 1, 1},       {GgmlType::I16, "I16", 1, 2},      {GgmlType::I32, "I32", 1, 4},
      {GgmlType::I64, "I64", 1, 8},     {GgmlType::F64, "F64", 1, 8},
  };
  for (const Row& r : rows) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(r.t));
    ASSERT_NE(info, nullptr) << r.name;
    EXPECT_STREQ(info->name, r.name);
    EXPECT_EQ(info->block_elems, r.elems) << r.name;
    EXPECT_EQ(info->block_bytes, r.bytes) << r.name;
    EXPECT_EQ(ggml_type_name(r.t), r.name);
    EXPECT_EQ(ggml_row_bytes(r.t, r.elems * 3), r.bytes * 3) << r.name;
  }
  EXPECT_EQ(ggml_type_info(4), nullptr);  // Q4_2, removed from ggml
  EXPECT_EQ(ggml_type_info(5), nullptr);
  EXPECT_EQ(ggml_type_info(1000), nullptr);
  EXPECT_EQ(ggml_type_name(static_cast<GgmlType>(1000)), "type#1000");
  EXPECT_THROW(ggml_row_bytes(GgmlType::Q4_K, 100), std::invalid_argument);
}

TEST(Dequant, RejectsBadArguments) {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(1024);
  EXPECT_THROW(dequantize(GgmlType::I32, src.data(), dst.data(), 4), std::invalid_argument);
  EXPECT_THROW(dequantize(static_cast<GgmlType>(99), src.data(), dst.data(), 4), std::invalid_argument);
  EXPECT_THROW(dequantize(GgmlType::Q4_0, src.data(), dst.data(), 33), std::invalid_argument);
  EXPECT_THROW(dequantize(GgmlType::Q6_K, src.data(), dst.data(), 128), std::invalid_argument);
  EXPECT_THROW(dequantize(GgmlType::F32, src.data(), dst.data(), -1), std::invalid_argument);
  EXPECT_NO_THROW(dequantize(GgmlType::Q6_K, src.data(), dst.data(), 0));
}

// Golden dumps of real tensors: real_<model>_<tensor name>.f32 holds the first values of that
// tensor as gguf-py dequantizes them.
void check_real_model(const std::string& path, const std::string& key) {
  auto gguf = GgufFile::open(path);
  const std::string prefix = "real_" + key + "_";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(golden_dir())) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(prefix, 0) != 0 || entry.path().extension() != ".f32") continue;
    const std::string tensor = file.substr(prefix.size(), file.size() - prefix.size() - 4);
    const GgufTensor* t = gguf->find_tensor(tensor);
    ASSERT_NE(t, nullptr) << tensor;
    const std::vector<float> want = read_floats(entry.path().string());
    ASSERT_LE(static_cast<int64_t>(want.size()), t->n_elements());
    std::vector<float> got(want.size());
    dequantize(t->type, t->data, got.data(), static_cast<int64_t>(want.size()));
    EXPECT_TRUE(same_floats(got, want)) << tensor << " (" << ggml_type_name(t->type) << ")";
    ++checked;
  }
  EXPECT_GE(checked, 3) << "golden files for " << key << " missing; run scripts/make-dequant-golden.py";
}

TEST(Dequant, RealSmolLM2Tensors) {
  HS_MODEL_OR_SKIP(path, test::kSmolLM2File);
  check_real_model(path, "smollm2");
}

TEST(Dequant, RealGemma3Tensors) {
  HS_MODEL_OR_SKIP(path, test::kGemma3File);
  check_real_model(path, "gemma3");
}

// Whole-model pass: every tensor dequantizes to finite values (a sanity check on real data at
// full size) and reports the throughput.
TEST(Dequant, RealGemma3WholeModelFinite) {
  HS_MODEL_OR_SKIP(path, test::kGemma3File);
  auto gguf = GgufFile::open(path);
  std::vector<float> buf;
  int64_t total = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const GgufTensor& t : gguf->tensors()) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t.type));
    ASSERT_TRUE(info->dequantizable) << t.name;
    const int64_t row = t.dims[0];
    const int64_t rows = t.n_elements() / row;
    const int64_t rows_per_chunk = std::max<int64_t>(1, (1 << 20) / row);
    buf.resize(static_cast<size_t>(rows_per_chunk * row));
    const size_t row_bytes = ggml_row_bytes(t.type, row);
    for (int64_t r = 0; r < rows; r += rows_per_chunk) {
      const int64_t nr = std::min(rows_per_chunk, rows - r);
      dequantize(t.type, t.data + r * row_bytes, buf.data(), nr * row);
      for (int64_t i = 0; i < nr * row; ++i) ASSERT_TRUE(std::isfinite(buf[i])) << t.name << " element " << r * row + i;
    }
    total += t.n_elements();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("dequantized %lld elements in %.3f s (%.1f M/s, including the finiteness check)\n",
              static_cast<long long>(total), secs, total / secs / 1e6);
}

}  // namespace
}  // namespace hs
