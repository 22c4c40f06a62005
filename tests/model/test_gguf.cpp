// GGUF reader: round trip of files written here (every value type, nested arrays, alignment),
// real model metadata, and corrupt files (every truncation, bad headers, bad tensors, absurd
// counts, random corruption) which must throw ModelFileError naming the file and the key or
// tensor, and never crash.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "test_util.h"

namespace hs {
namespace {

namespace fs = std::filesystem;
using VT = GgufValueType;

// --- a tiny GGUF writer --------------------------------------------------------------------

class Bytes {
 public:
  template <typename T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    data.insert(data.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    data.insert(data.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad_to(size_t align) {
    while (data.size() % align) data.push_back(0);
    return *this;
  }
  std::vector<uint8_t> data;
};

struct TestTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type;
  std::vector<uint8_t> bytes;
  int64_t offset_override = -1;  // to write a bad offset
};

// Writes a GGUF file. `kvs` writes n_kv key/value entries; tensors get aligned offsets in order.
std::vector<uint8_t> build_gguf(uint64_t n_kv, const std::function<void(Bytes&)>& kvs,
                                const std::vector<TestTensor>& tensors, size_t alignment = 32, uint32_t version = 3) {
  Bytes b;
  b.put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(tensors.size()).put<uint64_t>(n_kv);
  if (kvs) kvs(b);
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const TestTensor& t : tensors) {
    offset = (offset + alignment - 1) / alignment * alignment;
    offsets.push_back(offset);
    b.str(t.name).put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) b.put<uint64_t>(d);
    b.put<uint32_t>(t.type).put<uint64_t>(t.offset_override >= 0 ? static_cast<uint64_t>(t.offset_override) : offset);
    offset += t.bytes.size();
  }
  if (!tensors.empty()) b.pad_to(alignment);
  const size_t data_start = b.data.size();
  for (size_t i = 0; i < tensors.size(); ++i) {
    b.data.resize(data_start + offsets[i], 0);
    b.data.insert(b.data.end(), tensors[i].bytes.begin(), tensors[i].bytes.end());
  }
  return b.data;
}

// Key helpers for the writer.
void kv_u32(Bytes& b, const std::string& k, uint32_t v) { b.str(k).put<uint32_t>(uint32_t(VT::UINT32)).put<uint32_t>(v); }
void kv_str(Bytes& b, const std::string& k, const std::string& v) { b.str(k).put<uint32_t>(uint32_t(VT::STRING)).str(v); }

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("hs_gguf_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const std::string p = (path_ / name).string();
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

 private:
  fs::path path_;
};

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Expects open() to throw ModelFileError whose message contains every one of `parts`.
void expect_error(const std::string& path, const std::vector<std::string>& parts) {
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const ModelFileError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message lacks the path: " << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

// --- round trip ------------------------------------------------------------------------------

// A file with one key of every scalar type, arrays of every element type, nested arrays, an
// empty array, alignment 64 and three tensors.
std::vector<uint8_t> full_file(std::vector<TestTensor>* tensors_out = nullptr) {
  std::vector<TestTensor> tensors = {
      {"a.f32", {4, 3}, 0, f32_bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})},
      {"b.q8_0", {64, 2}, 8, std::vector<uint8_t>(4 * 34, 0x11)},
      {"c.f16", {8}, 1, std::vector<uint8_t>(16, 0x3c)},
  };
  if (tensors_out) *tensors_out = tensors;
  const uint64_t n_kv = 30;
  return build_gguf(n_kv, [](Bytes& b) {
    b.str("v.u8").put<uint32_t>(uint32_t(VT::UINT8)).put<uint8_t>(200);
    b.str("v.i8").put<uint32_t>(uint32_t(VT::INT8)).put<int8_t>(-100);
    b.str("v.u16").put<uint32_t>(uint32_t(VT::UINT16)).put<uint16_t>(60000);
    b.str("v.i16").put<uint32_t>(uint32_t(VT::INT16)).put<int16_t>(-30000);
    b.str("v.u32").put<uint32_t>(uint32_t(VT::UINT32)).put<uint32_t>(4000000000u);
    b.str("v.i32").put<uint32_t>(uint32_t(VT::INT32)).put<int32_t>(-2000000000);
    b.str("v.f32").put<uint32_t>(uint32_t(VT::FLOAT32)).put<float>(1.5f);
    b.str("v.bool").put<uint32_t>(uint32_t(VT::BOOL)).put<uint8_t>(1);
    b.str("v.str").put<uint32_t>(uint32_t(VT::STRING)).str("h\xc3\xa9llo");
    b.str("v.u64").put<uint32_t>(uint32_t(VT::UINT64)).put<uint64_t>((uint64_t{1} << 63) + 5);
    b.str("v.i64").put<uint32_t>(uint32_t(VT::INT64)).put<int64_t>(-(int64_t{1} << 62));
    b.str("v.f64").put<uint32_t>(uint32_t(VT::FLOAT64)).put<double>(3.25);
    auto arr = [&b](const std::string& k, VT et, uint64_t n) {
      b.str(k).put<uint32_t>(uint32_t(VT::ARRAY)).put<uint32_t>(uint32_t(et)).put<uint64_t>(n);
    };
    arr("a.u8", VT::UINT8, 3); b.put<uint8_t>(1).put<uint8_t>(2).put<uint8_t>(255);
    arr("a.i8", VT::INT8, 2); b.put<int8_t>(-1).put<int8_t>(127);
    arr("a.u16", VT::UINT16, 2); b.put<uint16_t>(7).put<uint16_t>(65535);
    arr("a.i16", VT::INT16, 2); b.put<int16_t>(-7).put<int16_t>(300);
    arr("a.u32", VT::UINT32, 2); b.put<uint32_t>(1).put<uint32_t>(4294967295u);
    arr("a.i32", VT::INT32, 3); b.put<int32_t>(-5).put<int32_t>(0).put<int32_t>(5);
    arr("a.f32", VT::FLOAT32, 2); b.put<float>(0.5f).put<float>(-2.0f);
    arr("a.bool", VT::BOOL, 3); b.put<uint8_t>(1).put<uint8_t>(0).put<uint8_t>(1);
    arr("a.str", VT::STRING, 3); b.str("a").str("").str("bc");
    arr("a.u64", VT::UINT64, 1); b.put<uint64_t>(~uint64_t{0});
    arr("a.i64", VT::INT64, 2); b.put<int64_t>(-9).put<int64_t>(int64_t{1} << 40);
    arr("a.f64", VT::FLOAT64, 1); b.put<double>(-0.125);
    arr("a.empty", VT::UINT32, 0);
    // [[1, 2], [3]] as arrays of u32
    arr("a.nested", VT::ARRAY, 2);
    b.put<uint32_t>(uint32_t(VT::UINT32)).put<uint64_t>(2).put<uint32_t>(1).put<uint32_t>(2);
    b.put<uint32_t>(uint32_t(VT::UINT32)).put<uint64_t>(1).put<uint32_t>(3);
    // [[["x"]], []] : arrays of arrays of strings, three levels
    arr("a.deep", VT::ARRAY, 2);
    b.put<uint32_t>(uint32_t(VT::ARRAY)).put<uint64_t>(1);
    b.put<uint32_t>(uint32_t(VT::STRING)).put<uint64_t>(1).str("x");
    b.put<uint32_t>(uint32_t(VT::ARRAY)).put<uint64_t>(0);
    kv_str(b, "general.architecture", "test");
    kv_u32(b, "general.alignment", 64);
    kv_str(b, "zz.last", "end");
  }, tensors, 64);
}

TEST(Gguf, RoundTripEveryValueType) {
  TempDir dir;
  std::vector<TestTensor> tensors;
  const std::string path = dir.write("full.gguf", full_file(&tensors));
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->metadata().size(), 30u);

  // Scalars: declared types kept, values widened.
  EXPECT_EQ(f->metadata().at("v.u8").type, VT::UINT8);
  EXPECT_EQ(f->get_int("v.u8"), 200);
  EXPECT_EQ(f->get_int("v.i8"), -100);
  EXPECT_EQ(f->get_int("v.u16"), 60000);
  EXPECT_EQ(f->get_int("v.i16"), -30000);
  EXPECT_EQ(f->get_int("v.u32"), 4000000000LL);
  EXPECT_EQ(f->get_int("v.i32"), -2000000000);
  EXPECT_EQ(f->metadata().at("v.f32").type, VT::FLOAT32);
  EXPECT_EQ(f->get_float("v.f32"), 1.5);
  EXPECT_TRUE(f->get_bool("v.bool"));
  EXPECT_EQ(f->get_string("v.str"), "h\xc3\xa9llo");
  EXPECT_EQ(std::get<uint64_t>(f->metadata().at("v.u64").data), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(f->get_int("v.i64"), -(int64_t{1} << 62));
  EXPECT_EQ(f->get_float("v.f64"), 3.25);
  EXPECT_EQ(f->get_float("v.u16"), 60000.0);  // integers read as floats too
  EXPECT_EQ(f->metadata().at("v.str").array_size(), 0u);

  // Arrays.
  const auto& u8 = f->metadata().at("a.u8");
  EXPECT_EQ(u8.type, VT::ARRAY);
  EXPECT_EQ(u8.elem_type, VT::UINT8);
  EXPECT_EQ(u8.array_size(), 3u);
  EXPECT_EQ(std::get<std::vector<uint64_t>>(u8.data), (std::vector<uint64_t>{1, 2, 255}));
  EXPECT_EQ(f->get_int_array("a.u8"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f->get_int_array("a.i8"), (std::vector<int64_t>{-1, 127}));
  EXPECT_EQ(f->get_int_array("a.u16"), (std::vector<int64_t>{7, 65535}));
  EXPECT_EQ(f->get_int_array("a.i16"), (std::vector<int64_t>{-7, 300}));
  EXPECT_EQ(f->get_int_array("a.u32"), (std::vector<int64_t>{1, 4294967295LL}));
  EXPECT_EQ(f->get_int_array("a.i32"), (std::vector<int64_t>{-5, 0, 5}));
  EXPECT_EQ(f->get_float_array("a.f32"), (std::vector<double>{0.5, -2.0}));
  EXPECT_EQ(f->metadata().at("a.bool").elem_type, VT::BOOL);
  EXPECT_EQ(f->get_int_array("a.bool"), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(f->get_string_array("a.str"), (std::vector<std::string>{"a", "", "bc"}));
  EXPECT_EQ(std::get<std::vector<uint64_t>>(f->metadata().at("a.u64").data), std::vector<uint64_t>{~uint64_t{0}});
  EXPECT_THROW(f->get_int_array("a.u64"), ModelFileError);  // does not fit int64
  EXPECT_EQ(f->get_int_array("a.i64"), (std::vector<int64_t>{-9, int64_t{1} << 40}));
  EXPECT_EQ(f->get_float_array("a.f64"), std::vector<double>{-0.125});
  EXPECT_EQ(f->get_float_array("a.i32"), (std::vector<double>{-5, 0, 5}));
  EXPECT_EQ(f->metadata().at("a.empty").array_size(), 0u);
  EXPECT_TRUE(f->get_int_array("a.empty").empty());

  const auto& nested = f->metadata().at("a.nested");
  EXPECT_EQ(nested.elem_type, VT::ARRAY);
  const auto& inner = std::get<std::vector<GgufValue>>(nested.data);
  ASSERT_EQ(inner.size(), 2u);
  EXPECT_EQ(inner[0].type, VT::ARRAY);
  EXPECT_EQ(inner[0].elem_type, VT::UINT32);
  EXPECT_EQ(std::get<std::vector<uint64_t>>(inner[0].data), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(std::get<std::vector<uint64_t>>(inner[1].data), (std::vector<uint64_t>{3}));
  const auto& deep = std::get<std::vector<GgufValue>>(f->metadata().at("a.deep").data);
  ASSERT_EQ(deep.size(), 2u);
  const auto& level2 = std::get<std::vector<GgufValue>>(deep[0].data);
  ASSERT_EQ(level2.size(), 1u);
  EXPECT_EQ(std::get<std::vector<std::string>>(level2[0].data), std::vector<std::string>{"x"});
  EXPECT_EQ(deep[1].array_size(), 0u);
  EXPECT_EQ(f->get_string("zz.last"), "end");

  // Tensors.
  ASSERT_EQ(f->tensors().size(), 3u);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensor& t = f->tensors()[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(static_cast<uint32_t>(t.type), tensors[i].type);
    ASSERT_EQ(t.dims.size(), tensors[i].dims.size());
    for (size_t d = 0; d < t.dims.size(); ++d) EXPECT_EQ(static_cast<uint64_t>(t.dims[d]), tensors[i].dims[d]);
    EXPECT_EQ(t.nbytes, tensors[i].bytes.size()) << t.name;
    EXPECT_EQ(t.offset % 64, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u) << "mmap is page aligned, so data follows the alignment";
    EXPECT_EQ(std::memcmp(t.data, tensors[i].bytes.data(), t.nbytes), 0) << t.name;
    EXPECT_EQ(f->find_tensor(t.name), &t);
  }
  EXPECT_EQ(f->tensors()[0].n_elements(), 12);
  EXPECT_EQ(f->tensors()[1].n_elements(), 128);
  EXPECT_EQ(f->find_tensor("nope"), nullptr);
  float third;
  std::memcpy(&third, f->tensors()[0].data + 8, 4);
  EXPECT_EQ(third, 2.0f);
}

TEST(Gguf, GettersReportKeyAndType) {
  TempDir dir;
  const std::string path = dir.write("g.gguf", full_file());
  auto f = GgufFile::open(path);
  auto message = [](const std::function<void()>& fn) -> std::string {
    try {
      fn();
    } catch (const ModelFileError& e) {
      return e.what();
    }
    return "<no error>";
  };
  std::string m = message([&] { f->get_string("missing.key"); });
  EXPECT_NE(m.find("missing.key"), std::string::npos) << m;
  EXPECT_NE(m.find(path), std::string::npos) << m;
  m = message([&] { f->get_string("v.u32"); });
  EXPECT_NE(m.find("v.u32"), std::string::npos) << m;
  EXPECT_NE(m.find("UINT32"), std::string::npos) << m;
  m = message([&] { f->get_int("v.u64"); });  // 2^63 + 5 does not fit
  EXPECT_NE(m.find("v.u64"), std::string::npos) << m;
  m = message([&] { f->get_int("a.u32"); });
  EXPECT_NE(m.find("ARRAY of UINT32"), std::string::npos) << m;
  EXPECT_THROW(f->get_bool("v.u8"), ModelFileError);
  EXPECT_THROW(f->get_float("v.str"), ModelFileError);
  EXPECT_THROW(f->get_string_array("a.u8"), ModelFileError);
  EXPECT_THROW(f->get_float_array("a.str"), ModelFileError);
  EXPECT_THROW(f->get_int_array("a.f32"), ModelFileError);
  EXPECT_THROW(f->get_float_array("a.bool"), ModelFileError);

  EXPECT_FALSE(f->opt_string("missing").has_value());
  EXPECT_FALSE(f->opt_int("missing").has_value());
  EXPECT_FALSE(f->opt_float("missing").has_value());
  EXPECT_FALSE(f->opt_bool("missing").has_value());
  EXPECT_EQ(f->opt_string("general.architecture"), "test");
  EXPECT_EQ(f->opt_int("v.i16"), -30000);
  EXPECT_EQ(f->opt_float("v.f64"), 3.25);
  EXPECT_EQ(f->opt_bool("v.bool"), true);
  EXPECT_THROW(f->opt_int("v.str"), ModelFileError);  // present but wrong type still throws
  EXPECT_TRUE(f->has("v.i8"));
  EXPECT_FALSE(f->has("v.nope"));
  EXPECT_STREQ(gguf_value_type_name(VT::FLOAT64), "FLOAT64");
}

TEST(Gguf, Version2AndDefaultAlignment) {
  TempDir dir;
  const auto bytes = build_gguf(1, [](Bytes& b) { kv_str(b, "general.architecture", "llama"); },
                                {{"t", {32}, 2, std::vector<uint8_t>(18, 0)}, {"u", {3}, 0, f32_bytes({1, 2, 3})}},
                                32, 2);
  auto f = GgufFile::open(dir.write("v2.gguf", bytes));
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->alignment(), 32u);
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[1].offset, 32u);
  EXPECT_EQ(f->tensors()[0].type, GgmlType::Q4_0);
}

TEST(Gguf, EmptyFileWithoutTensors) {
  TempDir dir;
  auto f = GgufFile::open(dir.write("e.gguf", build_gguf(0, nullptr, {})));
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_TRUE(f->tensors().empty());
}

// --- real models --------------------------------------------------------------------------------

void check_model(const std::string& path, const std::string& arch, size_t n_tensors, size_t n_tokens) {
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_string("general.architecture"), arch);
  EXPECT_EQ(f->tensors().size(), n_tensors);
  EXPECT_EQ(f->metadata().at("tokenizer.ggml.tokens").array_size(), n_tokens);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), n_tokens);
  EXPECT_EQ(f->get_int_array("tokenizer.ggml.token_type").size(), n_tokens);
  if (f->has("tokenizer.ggml.scores")) {  // SentencePiece vocabularies only
    EXPECT_EQ(f->get_float_array("tokenizer.ggml.scores").size(), n_tokens);
  }
  EXPECT_GT(f->get_int(arch + ".block_count"), 0);
  EXPECT_GT(f->get_float(arch + ".attention.layer_norm_rms_epsilon"), 0.0);
  const GgufTensor* emb = f->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  ASSERT_EQ(emb->dims.size(), 2u);
  EXPECT_EQ(emb->dims[1], static_cast<int64_t>(n_tokens));
  EXPECT_EQ(emb->dims[0], f->get_int(arch + ".embedding_length"));
  EXPECT_EQ(emb->nbytes, ggml_row_bytes(emb->type, emb->dims[0]) * n_tokens);
}

TEST(Gguf, RealSmolLM2Metadata) {
  HS_MODEL_OR_SKIP(path, test::kSmolLM2File);
  check_model(path, "llama", 272, 49152);
}

TEST(Gguf, RealGemma3Metadata) {
  HS_MODEL_OR_SKIP(path, test::kGemma3File);
  check_model(path, "gemma3", 236, 262144);
}

// --- corrupt files --------------------------------------------------------------------------

TEST(Gguf, EveryTruncationThrows) {
  TempDir dir;
  const auto bytes = full_file();
  for (size_t len = 0; len < bytes.size(); ++len) {
    const std::string path = dir.write("trunc.gguf", std::vector<uint8_t>(bytes.begin(), bytes.begin() + len));
    try {
      GgufFile::open(path);
      ADD_FAILURE() << "prefix of " << len << " bytes opened without error";
    } catch (const ModelFileError& e) {
      ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

TEST(Gguf, TruncationMessagesNameKeyOrTensor) {
  TempDir dir;
  const auto bytes = build_gguf(1, [](Bytes& b) { kv_str(b, "general.name", "a fairly long name"); },
                                {{"w.weight", {8}, 0, f32_bytes(std::vector<float>(8, 1.0f))}});
  // Cut inside the string value, then inside the tensor info, then inside the tensor data.
  expect_error(dir.write("t1.gguf", std::vector<uint8_t>(bytes.begin(), bytes.begin() + 24 + 8 + 12 + 4 + 8 + 5)),
               {"general.name", "truncated"});
  expect_error(dir.write("t2.gguf", std::vector<uint8_t>(bytes.begin(), bytes.begin() + 24 + 8 + 12 + 4 + 8 + 18 + 8 + 8 + 2)),
               {"w.weight", "truncated"});
  expect_error(dir.write("t3.gguf", std::vector<uint8_t>(bytes.begin(), bytes.end() - 1)), {"w.weight", "out of file bounds"});
}

TEST(Gguf, BadMagic) {
  TempDir dir;
  auto bytes = full_file();
  bytes[0] = 'X';
  expect_error(dir.write("magic.gguf", bytes), {"magic"});
  expect_error(dir.write("tiny.gguf", {'G', 'G'}), {"truncated"});
}

TEST(Gguf, BadVersion) {
  TempDir dir;
  expect_error(dir.write("v7.gguf", build_gguf(0, nullptr, {}, 32, 7)), {"version 7"});
  expect_error(dir.write("v1.gguf", build_gguf(0, nullptr, {}, 32, 1)), {"version 1"});
  expect_error(dir.write("be.gguf", build_gguf(0, nullptr, {}, 32, 0x03000000)), {"big-endian"});
}

TEST(Gguf, UnknownValueType) {
  TempDir dir;
  expect_error(dir.write("vt.gguf", build_gguf(2, [](Bytes& b) {
                 kv_str(b, "general.architecture", "x");
                 b.str("my.odd.key").put<uint32_t>(13).put<uint32_t>(0);
               }, {})),
               {"my.odd.key", "unknown value type 13"});
  expect_error(dir.write("at.gguf", build_gguf(1, [](Bytes& b) {
                 b.str("my.array").put<uint32_t>(uint32_t(VT::ARRAY)).put<uint32_t>(99).put<uint64_t>(1).put<uint32_t>(0);
               }, {})),
               {"my.array", "unknown array element type 99"});
}

TEST(Gguf, UnknownTensorType) {
  TempDir dir;
  expect_error(dir.write("tt.gguf", build_gguf(0, nullptr, {{"weird.weight", {4}, 99, std::vector<uint8_t>(16)}})),
               {"weird.weight", "unknown tensor type 99"});
  // Type 4 (Q4_2) was removed from ggml.
  expect_error(dir.write("tt4.gguf", build_gguf(0, nullptr, {{"old.weight", {32}, 4, std::vector<uint8_t>(20)}})),
               {"old.weight", "unknown tensor type 4"});
}

TEST(Gguf, TensorDataPastEnd) {
  TempDir dir;
  TestTensor t{"far.weight", {4}, 0, f32_bytes({1, 2, 3, 4})};
  t.offset_override = 1 << 20;
  expect_error(dir.write("eof.gguf", build_gguf(0, nullptr, {t})), {"far.weight", "out of file bounds"});
  TestTensor huge{"huge.weight", {uint64_t{1} << 40, 4}, 0, f32_bytes({1})};
  expect_error(dir.write("huge.gguf", build_gguf(0, nullptr, {huge})), {"huge.weight", "out of file bounds"});
  TestTensor overflow{"ovf.weight", {uint64_t{1} << 62, 4}, 0, f32_bytes({1})};
  expect_error(dir.write("ovf.gguf", build_gguf(0, nullptr, {overflow})), {"ovf.weight", "absurd"});
  TestTensor neg{"neg.weight", {~uint64_t{0}}, 0, f32_bytes({1})};
  expect_error(dir.write("neg.gguf", build_gguf(0, nullptr, {neg})), {"neg.weight", "absurd"});
}

TEST(Gguf, TensorShapeAndOffsetChecks) {
  TempDir dir;
  expect_error(dir.write("blk.gguf", build_gguf(0, nullptr, {{"odd.weight", {33, 2}, 8, std::vector<uint8_t>(68)}})),
               {"odd.weight", "block size"});
  expect_error(dir.write("dims.gguf", build_gguf(0, nullptr, {{"five.weight", {1, 1, 1, 1, 1}, 0, f32_bytes({1})}})),
               {"five.weight", "dimensions"});
  TestTensor mis{"mis.weight", {4}, 0, f32_bytes({1, 2, 3, 4})};
  mis.offset_override = 4;
  expect_error(dir.write("mis.gguf", build_gguf(0, nullptr, {mis})), {"mis.weight", "alignment"});
  expect_error(dir.write("dup.gguf", build_gguf(0, nullptr, {{"same", {1}, 0, f32_bytes({1})}, {"same", {1}, 0, f32_bytes({2})}})),
               {"same", "duplicate"});
}

TEST(Gguf, AbsurdLengthsAndCounts) {
  TempDir dir;
  expect_error(dir.write("str.gguf", build_gguf(1, [](Bytes& b) {
                 b.str("big.str").put<uint32_t>(uint32_t(VT::STRING)).put<uint64_t>(uint64_t{1} << 60);
               }, {})),
               {"big.str", "absurd"});
  expect_error(dir.write("arr.gguf", build_gguf(1, [](Bytes& b) {
                 b.str("big.arr").put<uint32_t>(uint32_t(VT::ARRAY)).put<uint32_t>(uint32_t(VT::UINT64)).put<uint64_t>(uint64_t{1} << 62);
               }, {})),
               {"big.arr", "absurd array length"});
  expect_error(dir.write("sarr.gguf", build_gguf(1, [](Bytes& b) {
                 b.str("big.sarr").put<uint32_t>(uint32_t(VT::ARRAY)).put<uint32_t>(uint32_t(VT::STRING)).put<uint64_t>(1000000);
                 b.str("a");
               }, {})),
               {"big.sarr", "absurd array length"});
  // Key length: no key name to report yet, so the message names its index.
  Bytes b;
  b.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).put<uint64_t>(~uint64_t{0});
  b.data.resize(b.data.size() + 16, 0);
  expect_error(dir.write("key.gguf", b.data), {"key #0", "absurd"});
  Bytes counts;
  counts.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(uint64_t{1} << 60).put<uint64_t>(0);
  expect_error(dir.write("tc.gguf", counts.data), {"absurd tensor count"});
  Bytes kvc;
  kvc.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(~uint64_t{0});
  expect_error(dir.write("kc.gguf", kvc.data), {"absurd metadata key/value count"});
  // Tensor name length.
  Bytes tn;
  tn.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(1).put<uint64_t>(0).put<uint64_t>(uint64_t{1} << 50);
  tn.data.resize(tn.data.size() + 40, 0);
  expect_error(dir.write("tn.gguf", tn.data), {"tensor #0", "absurd"});
}

TEST(Gguf, DeeplyNestedArraysAreRejected) {
  TempDir dir;
  const int depth = 100000;  // would overflow the stack if recursion were unbounded
  Bytes b;
  b.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  b.str("deep.key").put<uint32_t>(uint32_t(VT::ARRAY));
  for (int i = 0; i < depth; ++i) b.put<uint32_t>(uint32_t(VT::ARRAY)).put<uint64_t>(1);
  b.put<uint32_t>(uint32_t(VT::UINT8)).put<uint64_t>(0);
  expect_error(dir.write("deep.gguf", b.data), {"deep.key", "nested"});
}

TEST(Gguf, BadAlignmentAndDuplicateKeys) {
  TempDir dir;
  expect_error(dir.write("al.gguf", build_gguf(1, [](Bytes& b) { kv_u32(b, "general.alignment", 48); }, {})),
               {"general.alignment", "power of two"});
  expect_error(dir.write("al0.gguf", build_gguf(1, [](Bytes& b) { kv_u32(b, "general.alignment", 0); }, {})),
               {"general.alignment"});
  expect_error(dir.write("als.gguf", build_gguf(1, [](Bytes& b) { kv_str(b, "general.alignment", "32"); }, {})),
               {"general.alignment", "STRING"});
  expect_error(dir.write("dupk.gguf", build_gguf(2, [](Bytes& b) {
                 kv_u32(b, "twice", 1);
                 kv_u32(b, "twice", 2);
               }, {})),
               {"twice", "duplicate"});
}

TEST(Gguf, MissingFileAndDirectory) {
  TempDir dir;
  const std::string missing = dir.write("x", {}) + ".does-not-exist";
  expect_error(missing, {"cannot open"});
  expect_error(fs::temp_directory_path().string(), {"not a regular file"});
  expect_error(dir.write("empty.gguf", {}), {"empty"});
}

// Random corruption: each mutated file either opens or throws ModelFileError; nothing else.
TEST(Gguf, RandomCorruptionNeverCrashes) {
  TempDir dir;
  const auto good = full_file();
  std::mt19937 rng(12345);
  int opened = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto bytes = good;
    const int n_changes = 1 + static_cast<int>(rng() % 4);
    for (int c = 0; c < n_changes; ++c) {
      const size_t pos = rng() % bytes.size();
      switch (rng() % 3) {
        case 0: bytes[pos] = static_cast<uint8_t>(rng()); break;
        case 1: bytes[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        default: bytes[pos] = (rng() % 2) ? 0xff : 0x00; break;
      }
    }
    const std::string path = dir.write("fuzz.gguf", bytes);
    try {
      auto f = GgufFile::open(path);
      // Touch everything a loader would.
      for (const auto& [k, v] : f->metadata()) (void)v.array_size();
      for (const GgufTensor& t : f->tensors())
        if (t.nbytes) (void)(t.data[0] + t.data[t.nbytes - 1]);
      ++opened;
    } catch (const ModelFileError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  std::printf("random corruption: %d opened, %d rejected\n", opened, rejected);
}

}  // namespace
}  // namespace hs
