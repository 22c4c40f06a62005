// Shard plans as JSON: a default head plus the layers that differ from it (format in
// shard_plan.h). The reader is strict and names the JSON path of every problem, because plans
// are edited by hand.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "shard/shard_plan.h"

namespace hs {

using nlohmann::json;

namespace {

// The head's fields in rule order, by name and by member, so readers and writers loop over them.
constexpr const char* kHeadFields[] = {"sink", "local", "stride", "offset"};
constexpr int32_t HeadShard::*kHeadMembers[] = {&HeadShard::sink, &HeadShard::local, &HeadShard::stride,
                                                &HeadShard::offset};

int32_t& field(HeadShard& h, int i) { return h.*kHeadMembers[i]; }
int32_t field(const HeadShard& h, int i) { return h.*kHeadMembers[i]; }

// ---- writing ----

// What both writers emit: the most common head as the default (ties: the first seen, so the
// output is deterministic), and the layers with at least one other head.
struct Layout {
  HeadShard fallback;
  std::vector<int32_t> layers;
};

Layout layout_of(const ShardPlan& p) {
  std::map<std::tuple<int32_t, int32_t, int32_t, int32_t>, std::pair<size_t, size_t>> seen;  // count, first index
  const auto& heads = p.heads();
  for (size_t i = 0; i < heads.size(); ++i) {
    auto [it, fresh] = seen.try_emplace(std::tuple(heads[i].sink, heads[i].local, heads[i].stride, heads[i].offset),
                                        std::pair<size_t, size_t>{0, i});
    ++it->second.first;
  }
  Layout out;
  size_t best_count = 0, best_first = 0;
  for (const auto& [key, cf] : seen) {
    if (cf.first > best_count || (cf.first == best_count && cf.second < best_first)) {
      best_count = cf.first;
      best_first = cf.second;
    }
  }
  if (!heads.empty()) out.fallback = heads[best_first];
  for (int32_t l = 0; l < p.n_layers(); ++l) {
    for (int32_t h = 0; h < p.n_kv_heads(); ++h) {
      if (!(p.at(l, h) == out.fallback)) {
        out.layers.push_back(l);
        break;
      }
    }
  }
  return out;
}

// The fields of `h` that differ from `fallback` (all of them when `all`), in rule order.
json head_json(const HeadShard& h, const HeadShard& fallback, bool all) {
  json j = json::object();
  for (int i = 0; i < 4; ++i)
    if (all || field(h, i) != field(fallback, i)) j[kHeadFields[i]] = field(h, i);
  return j;
}

// One head as a single line, fields in rule order (nlohmann would sort them by name).
std::string head_text(const HeadShard& h, const HeadShard& fallback, bool all) {
  std::string s = "{";
  for (int i = 0; i < 4; ++i) {
    if (!all && field(h, i) == field(fallback, i)) continue;
    if (s.size() > 1) s += ", ";
    s += std::string("\"") + kHeadFields[i] + "\": " + std::to_string(field(h, i));
  }
  return s + "}";
}

std::string plan_text(const ShardPlan& p) {
  const Layout lay = layout_of(p);
  std::ostringstream o;
  o << "{\n  \"name\": " << json(p.name()).dump() << ",\n  \"block_size\": " << p.block_size()
    << ",\n  \"n_layers\": " << p.n_layers() << ",\n  \"n_kv_heads\": " << p.n_kv_heads()
    << ",\n  \"default\": " << head_text(lay.fallback, lay.fallback, true) << ",\n  \"layers\": [";
  for (size_t k = 0; k < lay.layers.size(); ++k) {
    const int32_t l = lay.layers[k];
    o << (k ? ",\n    " : "\n    ") << "{\"layer\": " << l << ", \"heads\": [";
    for (int32_t h = 0; h < p.n_kv_heads(); ++h) o << (h ? ", " : "") << head_text(p.at(l, h), lay.fallback, false);
    o << "]}";
  }
  o << (lay.layers.empty() ? "]\n}\n" : "\n  ]\n}\n");
  return o.str();
}

// ---- reading ----

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::invalid_argument("shard plan: " + (path.empty() ? what : path + ": " + what));
}

std::string join_path(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

void expect_object(const json& j, const std::string& path) {
  if (!j.is_object()) fail(path, std::string("expected an object, got ") + j.type_name());
}

void expect_array(const json& j, const std::string& path) {
  if (!j.is_array()) fail(path, std::string("expected an array, got ") + j.type_name());
}

void check_keys(const json& obj, std::initializer_list<const char*> allowed, const std::string& path) {
  for (const auto& [key, value] : obj.items()) {
    bool ok = false;
    std::string list;
    for (const char* a : allowed) {
      ok = ok || key == a;
      if (!list.empty()) list += ", ";
      list += a;
    }
    if (!ok) fail(join_path(path, key), "unknown key (expected " + list + ")");
  }
}

const json& require(const json& obj, const char* key, const std::string& path) {
  if (!obj.contains(key)) fail(join_path(path, key), "missing");
  return obj.at(key);
}

int32_t read_int(const json& j, const std::string& path) {
  if (!j.is_number_integer()) {
    std::string got = std::string("expected an integer, got ") + j.type_name();
    if (j.is_number_float()) got += " " + j.dump();
    fail(path, got);
  }
  const bool too_big = j.is_number_unsigned() ? j.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX)
                                              : j.get<int64_t>() > INT32_MAX || j.get<int64_t>() < INT32_MIN;
  if (too_big) fail(path, j.dump() + " does not fit a 32-bit integer");
  return static_cast<int32_t>(j.get<int64_t>());
}

// Fields missing from `j` keep their value in `h`.
HeadShard read_head(const json& j, HeadShard h, const std::string& path) {
  expect_object(j, path);
  check_keys(j, {"sink", "local", "stride", "offset"}, path);
  for (int i = 0; i < 4; ++i)
    if (j.contains(kHeadFields[i])) field(h, i) = read_int(j.at(kHeadFields[i]), join_path(path, kHeadFields[i]));
  return h;
}

// Bounds checked before the heads are allocated, so that a typo cannot ask for terabytes.
constexpr int64_t kMaxHeads = int64_t{1} << 20;

int32_t read_count(const json& obj, const char* key) {
  const int32_t n = read_int(require(obj, key, ""), key);
  if (n < 1 || n > kMaxHeads) fail(key, std::to_string(n) + " must be in [1, " + std::to_string(kMaxHeads) + "]");
  return n;
}

void read_layer(const json& entry, const std::string& path, const HeadShard& fallback, std::vector<bool>& listed,
                ShardPlan& plan) {
  expect_object(entry, path);
  check_keys(entry, {"layer", "heads"}, path);
  const int32_t l = read_int(require(entry, "layer", path), join_path(path, "layer"));
  if (l < 0 || l >= plan.n_layers())
    fail(join_path(path, "layer"), std::to_string(l) + " is out of range [0, " + std::to_string(plan.n_layers()) + ")");
  if (listed[l]) fail(join_path(path, "layer"), "layer " + std::to_string(l) + " is listed twice");
  listed[l] = true;
  const std::string heads_path = join_path(path, "heads");
  const json& heads = require(entry, "heads", path);
  expect_array(heads, heads_path);
  if (heads.size() != static_cast<size_t>(plan.n_kv_heads()))
    fail(heads_path, "expected " + std::to_string(plan.n_kv_heads()) + " heads (one per kv head), got " +
                         std::to_string(heads.size()));
  for (int32_t h = 0; h < plan.n_kv_heads(); ++h)
    plan.at(l, h) = read_head(heads[h], fallback, heads_path + "[" + std::to_string(h) + "]");
}

}  // namespace

json ShardPlan::to_json() const {
  const Layout lay = layout_of(*this);
  json layers = json::array();
  for (int32_t l : lay.layers) {
    json heads = json::array();
    for (int32_t h = 0; h < n_kv_heads_; ++h) heads.push_back(head_json(at(l, h), lay.fallback, false));
    layers.push_back({{"layer", l}, {"heads", std::move(heads)}});
  }
  return {{"name", name_},         {"block_size", block_size_},
          {"n_layers", n_layers_}, {"n_kv_heads", n_kv_heads_},
          {"default", head_json(lay.fallback, lay.fallback, true)}, {"layers", std::move(layers)}};
}

ShardPlan ShardPlan::from_json(const json& j) {
  expect_object(j, "");
  check_keys(j, {"name", "block_size", "n_layers", "n_kv_heads", "default", "layers"}, "");
  const int32_t n_layers = read_count(j, "n_layers");
  const int32_t n_kv_heads = read_count(j, "n_kv_heads");
  if (int64_t{n_layers} * n_kv_heads > kMaxHeads)
    fail("", "n_layers x n_kv_heads = " + std::to_string(int64_t{n_layers} * n_kv_heads) + " heads is more than " +
                 std::to_string(kMaxHeads));
  const int32_t block_size = read_int(require(j, "block_size", ""), "block_size");
  const HeadShard fallback = j.contains("default") ? read_head(j.at("default"), HeadShard{}, "default") : HeadShard{};

  ShardPlan plan(n_layers, n_kv_heads, block_size, fallback);
  plan.set_name("custom");  // not the constructor's "dense": an unnamed plan may be anything
  if (j.contains("name")) {
    if (!j.at("name").is_string()) fail("name", std::string("expected a string, got ") + j.at("name").type_name());
    plan.set_name(j.at("name").get<std::string>());
  }
  if (j.contains("layers")) {
    const json& layers = j.at("layers");
    expect_array(layers, "layers");
    std::vector<bool> listed(n_layers, false);
    for (size_t k = 0; k < layers.size(); ++k)
      read_layer(layers[k], "layers[" + std::to_string(k) + "]", fallback, listed, plan);
  }
  plan.validate();
  return plan;
}

void ShardPlan::save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << plan_text(*this);
  out.close();
  if (!out) throw std::runtime_error("cannot write shard plan file " + path);
}

ShardPlan ShardPlan::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot open shard plan file");
  std::stringstream buf;
  buf << in.rdbuf();

  // nlohmann keeps the last of two equal keys silently; in a hand-edited plan that hides a
  // mistake, so count keys per open object.
  std::vector<std::set<std::string>> open_objects;
  auto reject_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end) open_objects.pop_back();
    if (event == json::parse_event_t::key && !open_objects.back().insert(parsed.get<std::string>()).second)
      throw std::invalid_argument("duplicate key \"" + parsed.get<std::string>() + "\"");
    return true;
  };
  try {
    const json j = json::parse(buf.str(), reject_duplicates, /*allow_exceptions=*/true, /*ignore_comments=*/true);
    ShardPlan plan = from_json(j);
    if (!j.contains("name")) plan.set_name(std::filesystem::path(path).stem().string());
    return plan;
  } catch (const json::exception& e) {
    throw std::invalid_argument(path + ": invalid JSON: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

}  // namespace hs
