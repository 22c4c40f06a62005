// Shard plans: the HCS rule on hand-computed cases, the closed-form kept-block count against a
// brute-force count, the generators' coverage, validation messages, JSON, specs and the plan
// files shipped in configs/plans/.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "shard/shard_plan.h"
#include "test_util.h"

namespace hs {

// Readable gtest failures (found by argument-dependent lookup, so outside the unnamed namespace).
void PrintTo(const HeadShard& h, std::ostream* os) {
  *os << "{sink " << h.sink << ", local " << h.local << ", stride " << h.stride << ", offset " << h.offset << "}";
}
void PrintTo(const ShardPlan& p, std::ostream* os) { *os << p.to_json().dump(); }

namespace {

using nlohmann::json;

// The message of the std::invalid_argument that f throws, or "" when it throws none.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(expr, substring)                                  \
  do {                                                                 \
    const std::string msg_ = error_of([&] { (void)(expr); });          \
    EXPECT_NE(msg_.find(substring), std::string::npos)                 \
        << #expr << "\n  message: '" << msg_ << "'\n  expected: '" << (substring) << "'"; \
  } while (0)

ModelConfig preset(const std::string& name) {
  std::ifstream in(test::source_path("configs/models/" + name + ".json"));
  return config_from_preset(json::parse(in));
}

// A per-test scratch file, removed afterwards.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name)
      : path((std::filesystem::temp_directory_path() / ("hs_shard_" + std::to_string(::getpid()) + "_" + name)).string()) {}
  ~TempFile() { std::remove(path.c_str()); }
  void write(const std::string& text) const { std::ofstream(path) << text; }
};

// ---- the rule ----

TEST(HeadShardRule, DenseHeadAttendsEveryEarlierPositionAndNothingLater) {
  const HeadShard dense{0, 1, 1, 0};
  EXPECT_EQ(dense.kind(), HeadKind::Dense);
  EXPECT_TRUE(dense.attends(1000, 0, 64));
  EXPECT_TRUE(dense.attends(1000, 500, 64));
  EXPECT_TRUE(dense.attends(7, 7, 64));
  EXPECT_FALSE(dense.attends(7, 8, 64));  // causality
  EXPECT_EQ(dense.kept_blocks(0), 1);
  EXPECT_EQ(dense.kept_blocks(99), 100);
}

TEST(HeadShardRule, StreamingHeadKeepsSinksAndTheRecentWindow) {
  const HeadShard h{1, 2, 0, 0};  // block 0 + the query's block and the one before
  EXPECT_EQ(h.kind(), HeadKind::Streaming);
  // B = 16, t = 100 is in block 6.
  EXPECT_TRUE(h.attends(100, 3, 16));    // block 0: sink
  EXPECT_TRUE(h.attends(100, 15, 16));   // block 0: sink
  EXPECT_FALSE(h.attends(100, 16, 16));  // block 1: 6 - 1 = 5 >= local
  EXPECT_FALSE(h.attends(100, 79, 16));  // block 4
  EXPECT_TRUE(h.attends(100, 80, 16));   // block 5: 6 - 5 = 1 < local
  EXPECT_TRUE(h.attends(100, 100, 16));  // itself
  EXPECT_FALSE(h.attends(100, 101, 16)); // future, same block
  EXPECT_EQ(h.kept_blocks(6), 3);
  EXPECT_EQ(h.kept_blocks(1), 2);
  EXPECT_EQ(h.kept_blocks(0), 1);
}

TEST(HeadShardRule, StridedHeadKeepsItsResidueClass) {
  const HeadShard h{0, 1, 4, 1};  // on the stride: (j + 1) % 4 == 0, i.e. j = 3, 7, 11, ...
  EXPECT_EQ(h.kind(), HeadKind::Strided);
  EXPECT_TRUE(h.attends_block(10, 3));
  EXPECT_TRUE(h.attends_block(10, 7));
  EXPECT_FALSE(h.attends_block(10, 0));
  EXPECT_FALSE(h.attends_block(10, 2));
  EXPECT_FALSE(h.attends_block(10, 9));  // 10 - 9 = 1, not < local 1
  EXPECT_TRUE(h.attends_block(10, 10));  // the query's own block
  EXPECT_EQ(h.kept_blocks(10), 3);       // 3, 7, 10
  EXPECT_EQ(h.kept_blocks(11), 3);       // 3, 7, 11
}

TEST(HeadShardRule, StridedHeadWithSinksAtTokenLevel) {
  const HeadShard h{2, 3, 3, 2};  // sinks 0, 1; stride j = 1, 4, 7, 10; window i-2..i
  // Query block 12 keeps 0, 1 (sinks), 4, 7, 10 (stride; 10 also in the window), 11, 12.
  const std::set<int64_t> kept = {0, 1, 4, 7, 10, 11, 12};
  for (int64_t j = 0; j <= 12; ++j) EXPECT_EQ(h.attends_block(12, j), kept.count(j) == 1) << "block " << j;
  EXPECT_EQ(h.kept_blocks(12), 7);
  const int32_t B = 16;
  const int64_t t = 12 * B + 5;
  EXPECT_FALSE(h.attends(t, 2 * B + 15, B));  // block 2
  EXPECT_TRUE(h.attends(t, 4 * B, B));        // block 4
  EXPECT_TRUE(h.attends(t, 1 * B + 3, B));    // block 1 (sink, also on the stride)
  EXPECT_FALSE(h.attends(t, 9 * B, B));       // block 9
  EXPECT_TRUE(h.attends(t, 10 * B + 7, B));   // block 10
  EXPECT_FALSE(h.attends(t, t + 1, B));       // causality inside the query's block
}

HeadShard random_head(std::mt19937& rng) {
  HeadShard h;
  h.sink = static_cast<int32_t>(rng() % 6);
  h.local = 1 + static_cast<int32_t>(rng() % 7);
  h.stride = static_cast<int32_t>(rng() % 7);
  h.offset = h.stride > 1 ? static_cast<int32_t>(rng() % h.stride) : 0;
  return h;
}

TEST(HeadShardRule, KeptBlocksMatchesABruteForceCount) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 400; ++trial) {
    const HeadShard h = random_head(rng);
    EXPECT_EQ(h.kept_blocks(-1), 0);
    for (int64_t c = 0; c < 80; ++c) {
      int64_t n = 0;
      for (int64_t j = 0; j <= c; ++j) n += h.attends_block(c, j);
      ASSERT_EQ(h.kept_blocks(c), n) << "sink " << h.sink << " local " << h.local << " stride " << h.stride
                                     << " offset " << h.offset << " c " << c;
    }
  }
}

TEST(HeadShardRule, IsMonotoneSoADroppedBlockIsNeverNeededAgain) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 200; ++trial) {
    const HeadShard h = random_head(rng);
    for (int64_t i = 0; i < 60; ++i)
      for (int64_t j = 0; j <= i; ++j)
        if (!h.attends_block(i, j)) ASSERT_FALSE(h.attends_block(i + 1, j));
  }
}

// ---- generators ----

TEST(Generators, DensePlanIsAllDense) {
  const ShardPlan p = dense_plan(30, 3);
  EXPECT_EQ(p.n_layers(), 30);
  EXPECT_EQ(p.n_kv_heads(), 3);
  EXPECT_EQ(p.block_size(), 64);
  EXPECT_TRUE(p.all_dense());
  EXPECT_EQ(p.heads().size(), 90u);
  EXPECT_EQ(p.name(), "dense:block=64");
}

TEST(Generators, S2OffsetsRotateAcrossStridedLayersWhenHeadsAreFewerThanTheStride) {
  S2Options o;
  o.stride = 4, o.local = 4, o.sink = 1, o.dense_every = 2;
  const ShardPlan p = s2_plan(30, 3, o);
  EXPECT_EQ(p.name(), "s2:stride=4,local=4,sink=1,dense-every=2,block=64");
  for (int32_t l = 0; l < 30; l += 2)
    for (int32_t h = 0; h < 3; ++h) EXPECT_EQ(p.at(l, h).kind(), HeadKind::Dense) << l;
  // Strided layers 1, 3, 5 are the 0th, 1st, 2nd: offsets (h + k * 3) % 4.
  auto offsets = [&](int32_t l) { return std::vector<int32_t>{p.at(l, 0).offset, p.at(l, 1).offset, p.at(l, 2).offset}; };
  EXPECT_EQ(offsets(1), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(offsets(3), (std::vector<int32_t>{3, 0, 1}));
  EXPECT_EQ(offsets(5), (std::vector<int32_t>{2, 3, 0}));
  EXPECT_EQ(p.at(1, 0), (HeadShard{1, 4, 4, 0}));
}

TEST(Generators, S2OffsetsAreHeadModStrideWhenHeadsAreEnough) {
  S2Options o;
  o.stride = 4, o.dense_first = 2;
  const ShardPlan p = s2_plan(6, 8, o);
  for (int32_t h = 0; h < 8; ++h) {
    EXPECT_EQ(p.at(0, h).kind(), HeadKind::Dense);
    EXPECT_EQ(p.at(1, h).kind(), HeadKind::Dense);
    for (int32_t l = 2; l < 6; ++l) EXPECT_EQ(p.at(l, h).offset, h % 4);
  }
}

TEST(Generators, S2StridedLayersShardOnlyTheListedLayers) {
  S2Options o;
  o.stride = 3, o.local = 4, o.sink = 1, o.strided_layers = {17, 5, 11};
  const ShardPlan p = s2_plan(18, 1, o);
  EXPECT_EQ(p.name(), "s2:stride=3,local=4,sink=1,strided-layers=5;11;17,block=64");
  for (int32_t l = 0; l < 18; ++l)
    EXPECT_EQ(p.at(l, 0).kind(), l == 5 || l == 11 || l == 17 ? HeadKind::Strided : HeadKind::Dense) << l;
  EXPECT_EQ(p.at(5, 0).offset, 0);
  EXPECT_EQ(p.at(11, 0).offset, 1);
  EXPECT_EQ(p.at(17, 0).offset, 2);
}

// Every key block j <= i is attended, for query block i, by some head of every run of
// `group` consecutive strided layers (group = 1 when a layer has at least `stride` heads).
void expect_covered(const ShardPlan& p, int32_t stride) {
  std::vector<int32_t> strided;
  for (int32_t l = 0; l < p.n_layers(); ++l)
    if (p.at(l, 0).kind() == HeadKind::Strided) strided.push_back(l);
  ASSERT_FALSE(strided.empty());
  const int32_t H = p.n_kv_heads();
  const size_t group = H < stride ? static_cast<size_t>((stride + H - 1) / H) : 1;
  for (size_t g = 0; g + group <= strided.size(); ++g) {
    for (int64_t i = 0; i < 3 * stride + 5; ++i) {
      for (int64_t j = 0; j <= i; ++j) {
        bool any = false;
        for (size_t k = g; k < g + group && !any; ++k)
          for (int32_t h = 0; h < H && !any; ++h) any = p.at(strided[k], h).attends_block(i, j);
        ASSERT_TRUE(any) << p.name() << ": strided layers from " << strided[g] << " miss key block " << j
                         << " for query block " << i;
      }
    }
  }
}

TEST(Generators, S2StridedLayerGroupsCoverEveryBlock) {
  for (int32_t H : {1, 2, 3, 4, 8})
    for (int32_t stride : {2, 3, 4, 5, 8})
      for (int32_t dense_every : {0, 2, 3}) {
        S2Options o;
        o.stride = stride, o.local = 1, o.sink = 0, o.dense_every = dense_every, o.dense_first = dense_every == 3;
        const ShardPlan p = s2_plan(30, H, o);
        expect_covered(p, stride);
        // And it is really sharded: one head alone misses blocks.
        EXPECT_LT(p.at(1, 0).kept_blocks(100), 101) << p.name();
      }
}

TEST(Generators, StreamingPlan) {
  const ShardPlan p = streaming_plan(4, 2, 1, 16, 32);
  EXPECT_EQ(p.name(), "streaming:sink=1,local=16,block=32");
  for (const HeadShard& h : p.heads()) EXPECT_EQ(h, (HeadShard{1, 16, 0, 0}));
}

int count_dense(const ShardPlan& p) {
  int n = 0;
  for (const HeadShard& h : p.heads()) n += h.kind() == HeadKind::Dense;
  return n;
}

TEST(Generators, MixedByFractionIsSeededAndDeterministic) {
  MixedOptions o;
  o.dense_fraction = 0.3, o.seed = 11;
  const ShardPlan a = mixed_plan(30, 3, o);
  EXPECT_EQ(count_dense(a), 27);
  EXPECT_EQ(a, mixed_plan(30, 3, o));
  for (const HeadShard& h : a.heads())
    if (h.kind() != HeadKind::Dense) EXPECT_EQ(h, (HeadShard{1, 16, 0, 0}));
  o.seed = 12;
  EXPECT_NE(a.heads(), mixed_plan(30, 3, o).heads());
  o.dense_fraction = 0;
  EXPECT_EQ(count_dense(mixed_plan(30, 3, o)), 0);
  o.dense_fraction = 1;
  EXPECT_TRUE(mixed_plan(30, 3, o).all_dense());
}

TEST(Generators, MixedWithAListAndStridedRest) {
  MixedOptions o;
  o.dense_heads = {{3, 0}, {0, 1}};
  o.stride = 4, o.local = 2, o.sink = 0;
  const ShardPlan p = mixed_plan(5, 2, o);
  EXPECT_EQ(p.name(), "mixed:dense=0:1;3:0,sink=0,local=2,stride=4,block=64");
  EXPECT_EQ(count_dense(p), 2);
  EXPECT_EQ(p.at(0, 1).kind(), HeadKind::Dense);
  EXPECT_EQ(p.at(3, 0).kind(), HeadKind::Dense);
  // The n-th non-dense head, layer-major, gets offset n % 4.
  EXPECT_EQ(p.at(0, 0).offset, 0);
  EXPECT_EQ(p.at(1, 0).offset, 1);
  EXPECT_EQ(p.at(1, 1).offset, 2);
  EXPECT_EQ(p.at(2, 0).offset, 3);
  EXPECT_EQ(p.at(2, 1).offset, 0);
  EXPECT_EQ(p.at(3, 1).offset, 1);
}

TEST(Generators, RejectBadOptions) {
  S2Options s;
  s.stride = 1;
  EXPECT_ERROR(s2_plan(4, 2, s), "s2 plan: stride 1 must be >= 2");
  s = {};
  s.dense_first = 5;
  EXPECT_ERROR(s2_plan(4, 2, s), "dense_first 5 must be in [0, n_layers = 4]");
  s = {};
  s.strided_layers = {1, 1};
  EXPECT_ERROR(s2_plan(4, 2, s), "strided layer 1 is listed twice");
  s.strided_layers = {4};
  EXPECT_ERROR(s2_plan(4, 2, s), "strided layer 4 is out of range [0, 4)");
  s = {};
  s.block_size = 48;
  EXPECT_ERROR(s2_plan(4, 2, s), "block 48 must be a power of two in [16, 128]");
  EXPECT_ERROR(streaming_plan(4, 2, 1, 0), "local 0 must be >= 1");
  EXPECT_ERROR(dense_plan(0, 2), "n_layers 0 must be >= 1");
  MixedOptions m;
  m.dense_fraction = 1.5;
  EXPECT_ERROR(mixed_plan(4, 2, m), "dense_fraction 1.5 must be in [0, 1]");
  m = {};
  m.dense_heads = {{4, 0}};
  EXPECT_ERROR(mixed_plan(4, 2, m), "dense head 4:0 is out of range");
  m = {};
  m.stride = 1;
  EXPECT_ERROR(mixed_plan(4, 2, m), "stride 1 must be 0");
}

// ---- validation ----

TEST(Validation, NamesLayerHeadAndField) {
  ShardPlan p = s2_plan(6, 2, S2Options{});
  EXPECT_NO_THROW(p.validate());
  p.at(3, 1).offset = 9;
  EXPECT_EQ(error_of([&] { p.validate(); }), "shard plan: layer 3, kv head 1: offset 9 must be in [0, 8)");
  p = dense_plan(6, 2);
  p.at(2, 0).sink = -1;
  EXPECT_ERROR(p.validate(), "layer 2, kv head 0: sink -1 must be >= 0");
  p = dense_plan(6, 2);
  p.at(5, 1).local = 0;
  EXPECT_ERROR(p.validate(), "layer 5, kv head 1: local 0 must be >= 1");
  p = dense_plan(6, 2);
  p.at(0, 1).stride = -2;
  EXPECT_ERROR(p.validate(), "layer 0, kv head 1: stride -2 must be >= 0");
  p = dense_plan(6, 2);
  p.at(1, 0).offset = 1;
  EXPECT_ERROR(p.validate(), "layer 1, kv head 0: offset 1 must be 0 when stride is 1");
  p.at(1, 0).stride = 0;
  EXPECT_ERROR(p.validate(), "layer 1, kv head 0: offset 1 must be 0 when stride is 0");
  p.at(1, 0) = HeadShard{0, 1, 4, -1};
  EXPECT_ERROR(p.validate(), "layer 1, kv head 0: offset -1 must be in [0, 4)");
}

TEST(Validation, BlockSizeAndCounts) {
  for (int32_t b : {8, 48, 256, 0, -64}) EXPECT_ERROR(ShardPlan(2, 2, b).validate(), "block_size " + std::to_string(b));
  for (int32_t b : {16, 32, 64, 128}) EXPECT_NO_THROW(ShardPlan(2, 2, b).validate());
  EXPECT_ERROR(ShardPlan().validate(), "n_layers 0 must be >= 1");
  EXPECT_ERROR(ShardPlan(2, 0, 64).validate(), "n_kv_heads 0 must be >= 1");
}

TEST(Validation, ForModelNamesBothCounts) {
  const ModelConfig smol = preset("smollm2-135m"), gemma = preset("gemma3-270m");
  EXPECT_NO_THROW(dense_plan(30, 3).validate_for(smol));
  const std::string layers = error_of([&] { dense_plan(30, 3).validate_for(gemma); });
  EXPECT_NE(layers.find("30 layers"), std::string::npos) << layers;
  EXPECT_NE(layers.find("has 18"), std::string::npos) << layers;
  const std::string heads = error_of([&] { dense_plan(30, 1).validate_for(smol); });
  EXPECT_NE(heads.find("1 kv heads"), std::string::npos) << heads;
  EXPECT_NE(heads.find("has 3"), std::string::npos) << heads;
}

// ---- JSON ----

ShardPlan random_plan(std::mt19937& rng) {
  const int32_t blocks[] = {16, 32, 64, 128};
  ShardPlan p(1 + rng() % 12, 1 + rng() % 5, blocks[rng() % 4]);
  // Mostly one head so that the default-plus-overrides form is exercised; some layers differ.
  const HeadShard common = random_head(rng);
  for (int32_t l = 0; l < p.n_layers(); ++l)
    for (int32_t h = 0; h < p.n_kv_heads(); ++h) p.at(l, h) = rng() % 3 ? common : random_head(rng);
  p.set_name("random \"plan\" #" + std::to_string(rng() % 1000) + " \xc3\xa9");
  return p;
}

TEST(Json, RandomPlansRoundTripExactly) {
  std::mt19937 rng(3);
  TempFile file("roundtrip.json");
  for (int trial = 0; trial < 200; ++trial) {
    const ShardPlan p = random_plan(rng);
    EXPECT_EQ(ShardPlan::from_json(p.to_json()), p);
    EXPECT_EQ(ShardPlan::from_json(json::parse(p.to_json().dump())), p);
    p.save(file.path);
    ASSERT_EQ(ShardPlan::load(file.path), p) << p.to_json().dump();
  }
}

TEST(Json, DensePlanIsCompact) {
  const json j = dense_plan(30, 3).to_json();
  EXPECT_TRUE(j.at("layers").empty());
  EXPECT_EQ(j.at("default"), json::parse(R"({"sink": 0, "local": 1, "stride": 1, "offset": 0})"));
  // A strided layer lists only the fields that differ from the default.
  S2Options o;
  o.stride = 4, o.local = 4, o.dense_every = 2;
  const json s = s2_plan(4, 2, o).to_json();
  EXPECT_EQ(s.at("layers").at(0), json::parse(R"({"layer": 1, "heads": [{"local": 4, "stride": 4}, {"local": 4, "stride": 4, "offset": 1}]})"));
}

json small_plan_json() {
  return json::parse(R"({"name": "t", "block_size": 64, "n_layers": 4, "n_kv_heads": 2,
    "default": {"sink": 0, "local": 1, "stride": 1, "offset": 0},
    "layers": [{"layer": 2, "heads": [{"stride": 4, "offset": 3}, {"stride": 0, "local": 8}]}]})");
}

TEST(Json, ReadsDefaultsAndOverrides) {
  const ShardPlan p = ShardPlan::from_json(small_plan_json());
  EXPECT_EQ(p.name(), "t");
  EXPECT_EQ(p.at(2, 0), (HeadShard{0, 1, 4, 3}));
  EXPECT_EQ(p.at(2, 1), (HeadShard{0, 8, 0, 0}));
  EXPECT_EQ(p.at(3, 1), (HeadShard{0, 1, 1, 0}));
  json minimal = json::parse(R"({"block_size": 32, "n_layers": 2, "n_kv_heads": 1})");
  EXPECT_TRUE(ShardPlan::from_json(minimal).all_dense());
  EXPECT_EQ(ShardPlan::from_json(minimal).name(), "custom");
}

TEST(Json, RejectsUnknownKeysWrongTypesAndBadShapesNamingThePath) {
  auto with = [](const std::function<void(json&)>& edit) {
    json j = small_plan_json();
    edit(j);
    return error_of([&] { ShardPlan::from_json(j); });
  };
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << "message: '" << msg << "'\nexpected: '" << part << "'";
  };
  has(with([](json& j) { j["colour"] = 1; }), "colour: unknown key");
  has(with([](json& j) { j["layers"][0]["heads"][1]["stride"] = "4"; }), "layers[0].heads[1].stride: expected an integer");
  has(with([](json& j) { j["layers"][0]["heads"][0]["stride"] = 4.0; }), "layers[0].heads[0].stride: expected an integer");
  has(with([](json& j) { j["layers"][0]["heads"][0]["strid"] = 4; }), "layers[0].heads[0].strid: unknown key");
  has(with([](json& j) { j["default"]["local"] = true; }), "default.local: expected an integer");
  has(with([](json& j) { j["layers"][0]["heads"][0]["sink"] = 5000000000LL; }), "does not fit a 32-bit integer");
  has(with([](json& j) { j.erase("n_layers"); }), "n_layers: missing");
  has(with([](json& j) { j["n_layers"] = 0; }), "n_layers: 0 must be in [1,");
  has(with([](json& j) { j["name"] = 3; }), "name: expected a string");
  has(with([](json& j) { j["layers"] = json::object(); }), "layers: expected an array");
  has(with([](json& j) { j["layers"][0]["heads"].erase(1); }), "layers[0].heads: expected 2 heads");
  has(with([](json& j) { j["layers"][0]["layer"] = 4; }), "layers[0].layer: 4 is out of range [0, 4)");
  has(with([](json& j) { j["layers"].push_back(j["layers"][0]); }), "layers[1].layer: layer 2 is listed twice");
  has(with([](json& j) { j["layers"][0]["heads"][0]["offset"] = 5; }), "layer 2, kv head 0: offset 5 must be in [0, 4)");
  has(with([](json& j) { j["block_size"] = 100; }), "block_size 100 must be a power of two");
  EXPECT_ERROR(ShardPlan::from_json(json::array()), "expected an object");
}

TEST(Json, LoadErrorsNameTheFile) {
  TempFile file("bad.json");
  EXPECT_ERROR(ShardPlan::load(file.path + ".missing"), file.path + ".missing: cannot open");
  file.write("{\"n_layers\": 4,");
  EXPECT_ERROR(ShardPlan::load(file.path), file.path + ": invalid JSON");
  file.write(R"({"block_size": 64, "n_layers": 4, "n_kv_heads": 2, "n_layers": 5})");
  EXPECT_ERROR(ShardPlan::load(file.path), file.path + ": duplicate key \"n_layers\"");
  file.write(R"({"block_size": 64, "n_layers": 4, "n_kv_heads": 2, "layers": [{"layer": 9, "heads": []}]})");
  EXPECT_ERROR(ShardPlan::load(file.path), file.path + ": shard plan: layers[0].layer: 9 is out of range");
  // Comments are allowed, so that a hand-edited plan can say why.
  file.write("// two layers\n{\"block_size\": 64, \"n_layers\": 2, \"n_kv_heads\": 1}\n");
  EXPECT_EQ(ShardPlan::load(file.path).n_layers(), 2);
  // Unnamed: named after the file.
  EXPECT_EQ(ShardPlan::load(file.path).name(), std::filesystem::path(file.path).stem().string());
}

// ---- specs ----

TEST(Spec, BuildsEachGenerator) {
  const ModelConfig smol = preset("smollm2-135m");
  EXPECT_EQ(plan_from_spec("dense", smol), dense_plan(30, 3));
  EXPECT_EQ(plan_from_spec("dense:block=32", smol).block_size(), 32);
  S2Options o;
  o.stride = 4, o.local = 4, o.sink = 1, o.dense_every = 2;
  EXPECT_EQ(plan_from_spec("s2:stride=4,local=4,sink=1,dense-every=2,block=64", smol), s2_plan(30, 3, o));
  EXPECT_EQ(plan_from_spec("s2", smol), s2_plan(30, 3, S2Options{}));
  EXPECT_EQ(plan_from_spec("streaming", smol), streaming_plan(30, 3, 1, 16));
  EXPECT_EQ(plan_from_spec("streaming:local=4,sink=0", smol), streaming_plan(30, 3, 0, 4));
  EXPECT_EQ(count_dense(plan_from_spec("mixed:dense-frac=1/3,seed=5", smol)), 30);
  EXPECT_EQ(count_dense(plan_from_spec("mixed:dense-frac=0.5", smol)), 45);
  const ShardPlan listed = plan_from_spec("mixed:dense=0:1;29:2,stride=8,local=2", smol);
  EXPECT_EQ(count_dense(listed), 2);
  EXPECT_EQ(listed.at(29, 2).kind(), HeadKind::Dense);
  EXPECT_EQ(listed.at(0, 0), (HeadShard{1, 2, 8, 0}));
}

TEST(Spec, GlobalStridedLayersFollowTheModelsSlidingWindow) {
  const ModelConfig gemma = preset("gemma3-270m");
  const ShardPlan p = plan_from_spec("s2:stride=3,local=4,sink=1,strided-layers=global", gemma);
  EXPECT_EQ(p.name(), "s2:stride=3,local=4,sink=1,strided-layers=5;11;17,block=64");
  for (int32_t l = 0; l < 18; ++l) EXPECT_EQ(p.at(l, 0).kind() == HeadKind::Strided, !gemma.is_local(l)) << l;
  // Without a sliding window every layer is global.
  EXPECT_EQ(plan_from_spec("s2:stride=4,strided-layers=global", preset("smollm2-135m")).heads(),
            plan_from_spec("s2:stride=4", preset("smollm2-135m")).heads());
}

TEST(Spec, GeneratedNamesRebuildThePlan) {
  const ModelConfig smol = preset("smollm2-135m"), gemma = preset("gemma3-270m");
  for (const char* spec : {"dense:block=128", "s2:stride=8,local=16,dense-every=2,block=64",
                           "s2:stride=4,local=2,sink=2,dense-first=3,block=32", "streaming:sink=0,local=3,block=16",
                           "mixed:dense-frac=0.25,sink=1,local=16,seed=9", "mixed:dense=3:1;0:0,stride=4",
                           "mixed:dense-frac=0.1,stride=3,seed=1"}) {
    const ShardPlan p = plan_from_spec(spec, smol);
    EXPECT_EQ(plan_from_spec(p.name(), smol), p) << spec << " -> " << p.name();
  }
  const ShardPlan g = plan_from_spec("s2:stride=3,strided-layers=global", gemma);
  EXPECT_EQ(plan_from_spec(g.name(), gemma), g);
}

TEST(Spec, ErrorsNameTheProblem) {
  const ModelConfig smol = preset("smollm2-135m");
  auto err = [&](const std::string& spec) { return error_of([&] { plan_from_spec(spec, smol); }); };
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << "message: '" << msg << "'\nexpected: '" << part << "'";
  };
  has(err(""), "empty");
  has(err("foo"), "unknown generator 'foo'");
  has(err("s3:stride=4"), "unknown generator 's3'");
  has(err("s2:strid=4"), "unknown key 'strid' for s2 (expected stride, local");
  has(err("dense:stride=4"), "unknown key 'stride' for dense");
  has(err("s2:stride"), "option 'stride' needs a value");
  has(err("s2:stride=4,stride=8"), "key 'stride' is given twice");
  has(err("s2:stride=4,"), "empty option");
  has(err("dense:"), "no options after ':'");
  for (const char* v : {"4.5", "-4", "+4", "", " 4", "4x", "99999999999"})
    has(err(std::string("s2:stride=") + v), "stride: expected a non-negative integer");
  has(err("s2:stride=1"), "s2 plan: stride 1 must be >= 2");
  has(err("s2:block=48"), "block 48 must be a power of two");
  has(err("s2:strided-layers=1;x"), "strided-layers: expected layers");
  has(err("s2:strided-layers=1,dense-every=2"), "cannot be combined");
  has(err("s2:strided-layers=30"), "strided layer 30 is out of range");
  for (const char* v : {"1.5", "abc", "nan", "inf", "1/0", "-0.5", "1e-1", "3/2"})
    has(err(std::string("mixed:dense-frac=") + v), "dense-frac: expected a fraction in [0, 1]");
  has(err("mixed:dense=0:1,dense-frac=0.5"), "either dense or dense-frac");
  has(err("mixed:dense=0:1,seed=3"), "seed only applies with dense-frac");
  has(err("mixed:dense=0-1"), "dense: expected layer:head pairs");
  has(err("mixed:dense=30:0"), "dense head 30:0 is out of range");
  has(err("mixed:seed=-1"), "seed: expected a non-negative 64-bit integer");
  has(err("no-such-plan.json"), "shard plan file 'no-such-plan.json' not found");
  // The spec is quoted for context.
  has(err("s2:strid=4"), "shard plan spec 's2:strid=4': ");
}

TEST(Spec, PlanFileMustMatchTheModel) {
  const ModelConfig smol = preset("smollm2-135m");
  TempFile file("shape.json");
  dense_plan(18, 1).save(file.path);
  const std::string msg = error_of([&] { plan_from_spec(file.path, smol); });
  EXPECT_NE(msg.find(file.path), std::string::npos) << msg;
  EXPECT_NE(msg.find("18 layers"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has 30"), std::string::npos) << msg;
}

// ---- shipped plans ----

struct Shipped {
  const char* file;
  const char* model;
};

TEST(ShippedPlans, LoadValidateAndMatchTheirGenerator) {
  const Shipped plans[] = {
      {"smollm2-135m-dense", "smollm2-135m"}, {"smollm2-135m-s2", "smollm2-135m"},
      {"smollm2-135m-mixed", "smollm2-135m"}, {"gemma3-270m-dense", "gemma3-270m"},
      {"gemma3-270m-s2", "gemma3-270m"},       {"gemma3-270m-mixed", "gemma3-270m"},
  };
  for (const Shipped& s : plans) {
    SCOPED_TRACE(s.file);
    const ModelConfig config = preset(s.model);
    const std::string path = test::source_path(std::string("configs/plans/") + s.file + ".json");
    const ShardPlan p = plan_from_spec(path, config);
    EXPECT_EQ(p.n_layers(), config.n_layers);
    EXPECT_EQ(p.n_kv_heads(), config.n_kv_heads);
    EXPECT_EQ(p.block_size(), 64);
    // Each file is its generator's output, so it can be rebuilt from its name.
    EXPECT_EQ(plan_from_spec(p.name(), config), p) << p.name();
    // Found by bare name in the plans folder too.
    EXPECT_EQ(plan_from_spec(s.file, config), p);
    const std::string kind = std::string(s.file).substr(std::string(s.file).rfind('-') + 1);
    if (kind == "dense") EXPECT_TRUE(p.all_dense());
    if (kind != "dense") EXPECT_FALSE(p.all_dense());
    if (kind == "mixed") EXPECT_GT(count_dense(p), 0);
    // A plan made for the other model is refused.
    const ModelConfig other = preset(std::string(s.model) == "gemma3-270m" ? "smollm2-135m" : "gemma3-270m");
    EXPECT_ERROR(plan_from_spec(path, other), "layers but");
  }
}

TEST(ShippedPlans, S2PlansCoverEveryBlockAcrossTheirStridedLayers) {
  const ShardPlan smol = plan_from_spec("smollm2-135m-s2", preset("smollm2-135m"));
  expect_covered(smol, smol.at(1, 0).stride);
  const ShardPlan gemma = plan_from_spec("gemma3-270m-s2", preset("gemma3-270m"));
  expect_covered(gemma, gemma.at(5, 0).stride);
}

}  // namespace
}  // namespace hs
