// Hugging Face folder reader: tiny model folders written here (single file and sharded, F32,
// F16 and BF16), the HF -> GGUF name mapping, dims order, values, and corrupt folders.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/dequant.h"
#include "model/safetensors.h"

namespace hs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct StTensor {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<uint8_t> u16_bytes(const std::vector<uint16_t>& v) {
  std::vector<uint8_t> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Safetensors bytes: u64 header length, JSON header (padded with spaces to 8 bytes, as the
// reference writer does), data. `edit` may alter the header JSON before it is written.
std::vector<uint8_t> build_safetensors(const std::vector<StTensor>& tensors,
                                       const std::function<void(json&)>& edit = nullptr) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const StTensor& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  if (edit) edit(header);
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::vector<uint8_t> out;
  for (uint64_t n = h.size(), i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));  // little-endian
  out.insert(out.end(), h.begin(), h.end());
  for (const StTensor& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

class ModelDir {
 public:
  ModelDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("hs_st_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~ModelDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  void write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    std::ofstream out(file(name), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  void write(const std::string& name, const std::string& text) const {
    write(name, std::vector<uint8_t>(text.begin(), text.end()));
  }

 private:
  fs::path path_;
};

// Values chosen to be exact in every dtype used.
const std::vector<float> kEmbed = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};  // [5, 4]
const std::vector<uint16_t> kQF16 = {0x3c00, 0xbc00, 0x3800, 0x4000, 0x0000, 0x8000, 0x3e00, 0xc200,
                                     0x3c00, 0x3c00, 0x3c00, 0x3c00, 0x4400, 0x4400, 0x4400, 0x4400};  // [4, 4]
const std::vector<float> kQF16Values = {1, -1, 0.5, 2, 0, -0.0f, 1.5, -3, 1, 1, 1, 1, 4, 4, 4, 4};
const std::vector<uint16_t> kNormBF16 = {0x3f80, 0xc000, 0x3f00, 0x4040};  // 1, -2, 0.5, 3
const std::vector<float> kNormValues = {1, -2, 0.5, 3};

std::vector<StTensor> llama_tensors() {
  return {
      {"model.embed_tokens.weight", "F32", {5, 4}, f32_bytes(kEmbed)},
      {"model.layers.0.input_layernorm.weight", "BF16", {4}, u16_bytes(kNormBF16)},
      {"model.layers.0.self_attn.q_proj.weight", "F16", {4, 4}, u16_bytes(kQF16)},
      {"model.layers.0.post_attention_layernorm.weight", "F32", {4}, f32_bytes({1, 1, 1, 1})},
      {"model.layers.12.mlp.down_proj.weight", "F32", {4, 2}, f32_bytes({1, 2, 3, 4, 5, 6, 7, 8})},
      {"model.norm.weight", "F32", {4}, f32_bytes({2, 2, 2, 2})},
      {"lm_head.weight", "F16", {5, 4}, u16_bytes(std::vector<uint16_t>(20, 0x3c00))},
      {"model.rotary_emb.inv_freq", "F32", {2}, f32_bytes({1, 0.5})},
  };
}

void write_llama(const ModelDir& d) {
  d.write("config.json", std::string(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "hidden_size": 4, "num_hidden_layers": 13, "vocab_size": 5})"));
  d.write("model.safetensors", build_safetensors(llama_tensors()));
  d.write("tokenizer.json", std::string("{}"));
}

std::vector<float> values_of(const GgufTensor& t) {
  std::vector<float> v(static_cast<size_t>(t.n_elements()));
  dequantize(t.type, t.data, v.data(), t.n_elements());
  return v;
}

void expect_error(const std::string& dir, const std::vector<std::string>& parts) {
  try {
    SafetensorsModel::open(dir);
    ADD_FAILURE() << "no error for " << dir;
  } catch (const ModelFileError& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

TEST(Safetensors, LlamaSingleFile) {
  ModelDir d;
  write_llama(d);
  ASSERT_TRUE(is_safetensors_dir(d.path()));
  auto m = SafetensorsModel::open(d.path());
  EXPECT_EQ(m->architecture(), "llama");
  EXPECT_EQ(m->config().at("hidden_size").get<int>(), 4);
  EXPECT_EQ(m->tokenizer_json_path(), d.file("tokenizer.json"));
  EXPECT_FALSE(m->tokenizer_model_path().has_value());
  ASSERT_EQ(m->tensors().size(), 8u);

  // File order is kept, each tensor knows its HF name and file.
  EXPECT_EQ(m->tensors()[0].name, "token_embd.weight");
  EXPECT_EQ(m->hf_name(0), "model.embed_tokens.weight");
  EXPECT_EQ(m->file_of(0), d.file("model.safetensors"));

  const GgufTensor* emb = m->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::F32);
  EXPECT_EQ(emb->dims, (std::vector<int64_t>{4, 5}));  // ggml order: row length first
  EXPECT_EQ(emb->nbytes, 80u);
  EXPECT_EQ(emb->offset, 0u);
  EXPECT_EQ(values_of(*emb), kEmbed);
  EXPECT_EQ(m->find_hf_tensor("model.embed_tokens.weight"), emb);

  const GgufTensor* norm = m->find_tensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->type, GgmlType::BF16);
  EXPECT_EQ(norm->dims, std::vector<int64_t>{4});
  EXPECT_EQ(values_of(*norm), kNormValues);

  const GgufTensor* q = m->find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, GgmlType::F16);
  EXPECT_EQ(q->nbytes, 32u);
  const auto qv = values_of(*q);
  for (size_t i = 0; i < qv.size(); ++i) EXPECT_EQ(std::memcmp(&qv[i], &kQF16Values[i], 4), 0) << i;

  EXPECT_NE(m->find_tensor("blk.0.ffn_norm.weight"), nullptr);  // llama: post_attention_layernorm
  EXPECT_EQ(m->find_tensor("blk.0.post_attention_norm.weight"), nullptr);
  const GgufTensor* down = m->find_tensor("blk.12.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dims, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(values_of(*down), (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_NE(m->find_tensor("output_norm.weight"), nullptr);
  EXPECT_NE(m->find_tensor("output.weight"), nullptr);
  // Unknown names pass through unchanged.
  EXPECT_NE(m->find_tensor("model.rotary_emb.inv_freq"), nullptr);
  EXPECT_EQ(m->find_tensor("nope"), nullptr);
  EXPECT_EQ(m->find_hf_tensor("nope"), nullptr);
}

TEST(Safetensors, Gemma3MultimodalPrefixesAndNorms) {
  ModelDir d;
  d.write("config.json", std::string(R"({"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
      "text_config": {"model_type": "gemma3_text", "hidden_size": 4}})"));
  const auto one = f32_bytes({1, 1, 1, 1});
  d.write("model.safetensors", build_safetensors({
      {"model.language_model.embed_tokens.weight", "BF16", {3, 4}, u16_bytes(std::vector<uint16_t>(12, 0x3f80))},
      {"model.language_model.layers.0.input_layernorm.weight", "F32", {4}, one},
      {"model.language_model.layers.0.post_attention_layernorm.weight", "F32", {4}, one},
      {"model.language_model.layers.0.pre_feedforward_layernorm.weight", "F32", {4}, one},
      {"model.language_model.layers.0.post_feedforward_layernorm.weight", "F32", {4}, one},
      {"model.language_model.layers.0.self_attn.q_norm.weight", "F32", {4}, one},
      {"model.language_model.layers.0.self_attn.k_norm.weight", "F32", {4}, one},
      {"model.language_model.norm.weight", "F32", {4}, one},
      {"vision_tower.vision_model.embeddings.patch_embedding.weight", "F32", {4}, one},
  }));
  d.write("tokenizer.model", std::string("sp"));
  auto m = SafetensorsModel::open(d.path());
  EXPECT_EQ(m->architecture(), "gemma3");
  EXPECT_EQ(m->tokenizer_model_path(), d.file("tokenizer.model"));
  EXPECT_FALSE(m->tokenizer_json_path().has_value());
  for (const char* name : {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.post_attention_norm.weight",
                           "blk.0.ffn_norm.weight", "blk.0.post_ffw_norm.weight", "blk.0.attn_q_norm.weight",
                           "blk.0.attn_k_norm.weight", "output_norm.weight",
                           "vision_tower.vision_model.embeddings.patch_embedding.weight"})
    EXPECT_NE(m->find_tensor(name), nullptr) << name;
  EXPECT_EQ(m->find_tensor("token_embd.weight")->dims, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(m->hf_name(0), "model.language_model.embed_tokens.weight");
}

TEST(Safetensors, NameMapping) {
  struct Case { const char* hf; const char* arch; const char* gguf; };
  const Case cases[] = {
      {"model.embed_tokens.weight", "llama", "token_embd.weight"},
      {"model.norm.weight", "llama", "output_norm.weight"},
      {"lm_head.weight", "llama", "output.weight"},
      {"model.layers.0.input_layernorm.weight", "llama", "blk.0.attn_norm.weight"},
      {"model.layers.7.self_attn.q_proj.weight", "llama", "blk.7.attn_q.weight"},
      {"model.layers.7.self_attn.k_proj.weight", "llama", "blk.7.attn_k.weight"},
      {"model.layers.7.self_attn.v_proj.weight", "llama", "blk.7.attn_v.weight"},
      {"model.layers.7.self_attn.o_proj.weight", "llama", "blk.7.attn_output.weight"},
      {"model.layers.7.self_attn.q_proj.bias", "llama", "blk.7.attn_q.bias"},
      {"model.layers.29.post_attention_layernorm.weight", "llama", "blk.29.ffn_norm.weight"},
      {"model.layers.29.post_attention_layernorm.weight", "gemma3", "blk.29.post_attention_norm.weight"},
      {"model.layers.3.mlp.gate_proj.weight", "llama", "blk.3.ffn_gate.weight"},
      {"model.layers.3.mlp.up_proj.weight", "llama", "blk.3.ffn_up.weight"},
      {"model.layers.3.mlp.down_proj.weight", "llama", "blk.3.ffn_down.weight"},
      {"model.layers.3.self_attn.q_norm.weight", "gemma3", "blk.3.attn_q_norm.weight"},
      {"model.layers.3.self_attn.k_norm.weight", "gemma3", "blk.3.attn_k_norm.weight"},
      {"model.layers.3.pre_feedforward_layernorm.weight", "gemma3", "blk.3.ffn_norm.weight"},
      {"model.layers.3.post_feedforward_layernorm.weight", "gemma3", "blk.3.post_ffw_norm.weight"},
      {"model.language_model.layers.3.mlp.up_proj.weight", "gemma3", "blk.3.ffn_up.weight"},
      {"language_model.model.layers.3.mlp.up_proj.weight", "gemma3", "blk.3.ffn_up.weight"},
      {"language_model.model.embed_tokens.weight", "gemma3", "token_embd.weight"},
      {"language_model.lm_head.weight", "gemma3", "output.weight"},
      // Not mapped: returned unchanged.
      {"model.layers.3.mlp.experts.weight", "llama", "model.layers.3.mlp.experts.weight"},
      {"model.layers.x.mlp.up_proj.weight", "llama", "model.layers.x.mlp.up_proj.weight"},
      {"model.layers.3.mlp.up_proj.scale", "llama", "model.layers.3.mlp.up_proj.scale"},
      {"model.layers.3", "llama", "model.layers.3"},
      {"model.layers.", "llama", "model.layers."},
      {"", "llama", ""},
  };
  for (const Case& c : cases) EXPECT_EQ(hf_to_gguf_tensor_name(c.hf, c.arch), c.gguf) << c.hf << " / " << c.arch;
}

TEST(Safetensors, Sharded) {
  ModelDir d;
  d.write("config.json", std::string(R"({"model_type": "llama"})"));
  auto all = llama_tensors();
  std::vector<StTensor> a(all.begin(), all.begin() + 3), b(all.begin() + 3, all.end());
  d.write("model-00001-of-00002.safetensors", build_safetensors(a));
  d.write("model-00002-of-00002.safetensors", build_safetensors(b));
  json index = {{"metadata", {{"total_size", 1234}}}, {"weight_map", json::object()}};
  for (const auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  d.write("model.safetensors.index.json", index.dump());
  ASSERT_TRUE(is_safetensors_dir(d.path()));
  auto m = SafetensorsModel::open(d.path());
  ASSERT_EQ(m->tensors().size(), all.size());
  const GgufTensor* emb = m->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(values_of(*emb), kEmbed);
  const GgufTensor* down = m->find_tensor("blk.12.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(values_of(*down), (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
  for (size_t i = 0; i < m->tensors().size(); ++i) {
    const bool first = std::any_of(a.begin(), a.end(), [&](const StTensor& t) { return t.name == m->hf_name(i); });
    EXPECT_EQ(m->file_of(i), d.file(first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"));
  }

  // A tensor the index places in a file that lacks it.
  index["weight_map"]["model.layers.1.mlp.up_proj.weight"] = "model-00002-of-00002.safetensors";
  d.write("model.safetensors.index.json", index.dump());
  expect_error(d.path(), {"model-00002-of-00002.safetensors", "model.layers.1.mlp.up_proj.weight", "missing"});
  // A shard that does not exist.
  index["weight_map"].erase("model.layers.1.mlp.up_proj.weight");
  index["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
  d.write("model.safetensors.index.json", index.dump());
  expect_error(d.path(), {"model-00003-of-00002.safetensors", "cannot open"});
  // Shard names must stay inside the folder.
  index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  d.write("model.safetensors.index.json", index.dump());
  expect_error(d.path(), {"model.norm.weight", "bad shard file name"});
  d.write("model.safetensors.index.json", std::string(R"({"metadata": {}})"));
  expect_error(d.path(), {"model.safetensors.index.json", "weight_map"});
}

TEST(Safetensors, IsSafetensorsDir) {
  ModelDir d;
  EXPECT_FALSE(is_safetensors_dir(d.path()));
  d.write("model.safetensors", build_safetensors({}));
  EXPECT_FALSE(is_safetensors_dir(d.path()));  // no config.json
  d.write("config.json", std::string("{}"));
  EXPECT_TRUE(is_safetensors_dir(d.path()));
  EXPECT_FALSE(is_safetensors_dir(d.file("config.json")));
  EXPECT_FALSE(is_safetensors_dir(d.file("nonexistent")));
}

// --- corrupt folders ---------------------------------------------------------------------------

TEST(Safetensors, ErrorCases) {
  ModelDir d;
  write_llama(d);
  const std::string st = d.file("model.safetensors");
  const auto good = build_safetensors(llama_tensors());

  // Truncated header: the length promises more than the file holds.
  d.write("model.safetensors", std::vector<uint8_t>(good.begin(), good.begin() + 40));
  expect_error(d.path(), {st, "truncated"});
  d.write("model.safetensors", std::vector<uint8_t>(good.begin(), good.begin() + 5));
  expect_error(d.path(), {st, "truncated"});

  // Bad JSON.
  auto bad = good;
  bad[8] = '[';
  bad[9] = ',';
  d.write("model.safetensors", bad);
  expect_error(d.path(), {st, "bad JSON"});

  // Offsets past the end of the file (the last tensor's data cut short).
  d.write("model.safetensors", std::vector<uint8_t>(good.begin(), good.end() - 4));
  expect_error(d.path(), {st, "model.rotary_emb.inv_freq", "out of file bounds"});

  // Unknown dtype.
  d.write("model.safetensors", build_safetensors({{"model.embed_tokens.weight", "I64", {2}, std::vector<uint8_t>(16)}}));
  expect_error(d.path(), {st, "model.embed_tokens.weight", "unsupported dtype 'I64'"});

  // Byte span that disagrees with the shape.
  d.write("model.safetensors", build_safetensors({{"model.norm.weight", "F32", {4}, f32_bytes({1, 2, 3, 4})}},
                                                 [](json& h) { h["model.norm.weight"]["shape"] = {5}; }));
  expect_error(d.path(), {st, "model.norm.weight", "needs 20"});

  // Malformed entries.
  d.write("model.safetensors", build_safetensors({{"model.norm.weight", "F32", {4}, f32_bytes({1, 2, 3, 4})}},
                                                 [](json& h) { h["model.norm.weight"]["data_offsets"] = {-1, 16}; }));
  expect_error(d.path(), {"model.norm.weight", "data_offsets"});
  d.write("model.safetensors", build_safetensors({{"model.norm.weight", "F32", {4}, f32_bytes({1, 2, 3, 4})}},
                                                 [](json& h) { h["model.norm.weight"]["data_offsets"] = {16, 0}; }));
  expect_error(d.path(), {"model.norm.weight", "reversed"});
  d.write("model.safetensors", build_safetensors({{"model.norm.weight", "F32", {4}, f32_bytes({1, 2, 3, 4})}},
                                                 [](json& h) { h["model.norm.weight"].erase("dtype"); }));
  expect_error(d.path(), {"model.norm.weight", "dtype"});
  d.write("model.safetensors", build_safetensors({{"model.norm.weight", "F32", {4}, f32_bytes({1, 2, 3, 4})}},
                                                 [](json& h) { h["model.norm.weight"]["shape"] = {uint64_t{1} << 40, uint64_t{1} << 40}; }));
  expect_error(d.path(), {"model.norm.weight", "absurd shape"});
  d.write("model.safetensors", build_safetensors({}, [](json& h) { h = json::array(); }));
  expect_error(d.path(), {st, "not an object"});
  d.write("model.safetensors", std::vector<uint8_t>{});
  expect_error(d.path(), {st, "empty"});

  // Two HF names mapping to one GGUF name.
  d.write("model.safetensors", build_safetensors({
      {"model.embed_tokens.weight", "F32", {1}, f32_bytes({1})},
      {"model.language_model.embed_tokens.weight", "F32", {1}, f32_bytes({1})}}));
  expect_error(d.path(), {"token_embd.weight", "model.embed_tokens.weight", "model.language_model.embed_tokens.weight"});

  // Folder-level problems.
  d.write("model.safetensors", good);
  d.write("config.json", std::string("{not json"));
  expect_error(d.path(), {d.file("config.json"), "bad JSON"});
  d.write("config.json", std::string(R"({"hidden_size": 4})"));
  expect_error(d.path(), {d.file("config.json"), "model_type"});
  fs::remove(d.file("config.json"));
  expect_error(d.path(), {d.file("config.json"), "missing"});
  d.write("config.json", std::string(R"({"model_type": "llama"})"));
  fs::remove(st);
  expect_error(d.path(), {d.path(), "no model.safetensors"});
  expect_error(d.file("nonexistent"), {"not a directory"});
}

TEST(Safetensors, EveryTruncationThrows) {
  ModelDir d;
  d.write("config.json", std::string(R"({"model_type": "llama"})"));
  const auto good = build_safetensors(llama_tensors());
  const std::string st = d.file("model.safetensors");
  for (size_t len = 0; len < good.size(); ++len) {
    d.write("model.safetensors", std::vector<uint8_t>(good.begin(), good.begin() + len));
    try {
      SafetensorsModel::open(d.path());
      ADD_FAILURE() << "prefix of " << len << " bytes opened without error";
    } catch (const ModelFileError& e) {
      ASSERT_NE(std::string(e.what()).find(st), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace hs
