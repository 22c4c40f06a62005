// plan_from_spec: a plan file, or a generator with "key=value" options, parsed strictly: a
// typo in a spec must be an error, not a silently different plan.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/config.h"
#include "shard/shard_plan.h"

#ifndef HS_CONFIGS_DIR
#define HS_CONFIGS_DIR "configs"
#endif

namespace hs {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

// ---- values ----

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t at; (at = s.find(sep, start)) != std::string::npos; start = at + 1) parts.push_back(s.substr(start, at - start));
  parts.push_back(s.substr(start));
  return parts;
}

// Digits only: no sign, spaces or fraction; from_chars alone would accept "-3" and "7abc"'s prefix.
template <typename T>
std::optional<T> parse_digits(const std::string& v) {
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  T x{};
  auto r = std::from_chars(v.data(), v.data() + v.size(), x);
  if (r.ec != std::errc() || r.ptr != v.data() + v.size()) return std::nullopt;
  return x;
}

int32_t parse_count(const std::string& key, const std::string& v) {
  auto x = parse_digits<int32_t>(v);
  if (!x) bad(key + ": expected a non-negative integer, got '" + v + "'");
  return *x;
}

uint64_t parse_seed(const std::string& key, const std::string& v) {
  auto x = parse_digits<uint64_t>(v);
  if (!x) bad(key + ": expected a non-negative 64-bit integer, got '" + v + "'");
  return *x;
}

// A decimal ("0.25", "1") or a ratio of integers ("1/4"), in [0, 1].
double parse_fraction(const std::string& key, const std::string& v) {
  const std::string why = key + ": expected a fraction in [0, 1] (like 0.25 or 1/4), got '" + v + "'";
  double x = 0;
  if (auto slash = v.find('/'); slash != std::string::npos) {
    auto p = parse_digits<int64_t>(v.substr(0, slash)), q = parse_digits<int64_t>(v.substr(slash + 1));
    if (!p || !q || *q == 0) bad(why);
    x = static_cast<double>(*p) / static_cast<double>(*q);
  } else {
    // from_chars takes "inf", "nan" and exponents; only plain decimals are meant here.
    if (v.empty() || v.find_first_not_of("0123456789.") != std::string::npos) bad(why);
    auto r = std::from_chars(v.data(), v.data() + v.size(), x);
    if (r.ec != std::errc() || r.ptr != v.data() + v.size()) bad(why);
  }
  if (!(x >= 0.0 && x <= 1.0)) bad(why);
  return x;
}

std::vector<int32_t> parse_layer_list(const std::string& key, const std::string& v) {
  std::vector<int32_t> layers;
  for (const std::string& part : split(v, ';')) {
    auto x = parse_digits<int32_t>(part);
    if (!x) bad(key + ": expected layers like 5;11;17 (or 'global'), got '" + v + "'");
    layers.push_back(*x);
  }
  return layers;
}

std::vector<std::pair<int32_t, int32_t>> parse_head_list(const std::string& key, const std::string& v) {
  std::vector<std::pair<int32_t, int32_t>> heads;
  for (const std::string& part : split(v, ';')) {
    const auto colon = part.find(':');
    std::optional<int32_t> l, h;
    if (colon != std::string::npos) {
      l = parse_digits<int32_t>(part.substr(0, colon));
      h = parse_digits<int32_t>(part.substr(colon + 1));
    }
    if (!l || !h) bad(key + ": expected layer:head pairs like 0:1;3:0, got '" + v + "'");
    heads.emplace_back(*l, *h);
  }
  return heads;
}

// The layers that see the whole context: Gemma 3's global layers, or every layer of a model
// without a sliding window.
std::vector<int32_t> global_layers(const ModelConfig& config) {
  std::vector<int32_t> layers;
  for (int l = 0; l < config.n_layers; ++l)
    if (!config.is_local(l)) layers.push_back(l);
  if (layers.empty()) bad("strided-layers: the model has no global layers");
  return layers;
}

// ---- options ----

// The "key=value" options after the generator's colon; every key must be used.
class Options {
 public:
  Options(const std::string& generator, const std::string& text, std::vector<std::string> known)
      : generator_(generator), known_(std::move(known)) {
    if (text.empty()) return;
    for (const std::string& opt : split(text, ',')) {
      const auto eq = opt.find('=');
      if (opt.empty()) bad("empty option (a stray comma?)");
      if (eq == std::string::npos) bad("option '" + opt + "' needs a value (key=value)");
      const std::string key = opt.substr(0, eq);
      if (!is_known(key)) bad("unknown key '" + key + "' for " + generator_ + " (expected " + known_list() + ")");
      if (!values_.emplace(key, opt.substr(eq + 1)).second) bad("key '" + key + "' is given twice");
    }
  }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  int32_t count(const std::string& key, int32_t fallback) const {
    return has(key) ? parse_count(key, values_.at(key)) : fallback;
  }
  const std::string& text(const std::string& key) const { return values_.at(key); }

 private:
  bool is_known(const std::string& key) const {
    for (const auto& k : known_)
      if (k == key) return true;
    return false;
  }
  std::string known_list() const {
    std::string s;
    for (const auto& k : known_) {
      if (!s.empty()) s += ", ";
      s += k;
    }
    return s;
  }
  std::string generator_;
  std::vector<std::string> known_;
  std::map<std::string, std::string> values_;
};

ShardPlan dense_from(const Options& o, const ModelConfig& c) {
  return dense_plan(c.n_layers, c.n_kv_heads, o.count("block", 64));
}

ShardPlan s2_from(const Options& o, const ModelConfig& c) {
  S2Options s;
  s.stride = o.count("stride", s.stride);
  s.local = o.count("local", s.local);
  s.sink = o.count("sink", s.sink);
  s.dense_every = o.count("dense-every", s.dense_every);
  s.dense_first = o.count("dense-first", s.dense_first);
  s.block_size = o.count("block", s.block_size);
  if (o.has("strided-layers")) {
    if (o.has("dense-every") || o.has("dense-first"))
      bad("strided-layers cannot be combined with dense-every or dense-first");
    const std::string& v = o.text("strided-layers");
    s.strided_layers = v == "global" ? global_layers(c) : parse_layer_list("strided-layers", v);
  }
  return s2_plan(c.n_layers, c.n_kv_heads, s);
}

ShardPlan streaming_from(const Options& o, const ModelConfig& c) {
  return streaming_plan(c.n_layers, c.n_kv_heads, o.count("sink", 1), o.count("local", 16), o.count("block", 64));
}

ShardPlan mixed_from(const Options& o, const ModelConfig& c) {
  MixedOptions m;
  if (o.has("dense")) {
    if (o.has("dense-frac")) bad("give either dense or dense-frac, not both");
    if (o.has("seed")) bad("seed only applies with dense-frac");
    m.dense_heads = parse_head_list("dense", o.text("dense"));
  } else if (o.has("dense-frac")) {
    m.dense_fraction = parse_fraction("dense-frac", o.text("dense-frac"));
  }
  m.sink = o.count("sink", m.sink);
  m.local = o.count("local", m.local);
  m.stride = o.count("stride", m.stride);
  m.block_size = o.count("block", m.block_size);
  if (o.has("seed")) m.seed = parse_seed("seed", o.text("seed"));
  return mixed_plan(c.n_layers, c.n_kv_heads, m);
}

// ---- files ----

std::vector<std::string> plan_dirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("HEADSHARD_CONFIGS_DIR")) dirs.push_back(std::string(env) + "/plans");
  dirs.push_back(std::string(HS_CONFIGS_DIR) + "/plans");
  return dirs;
}

// `file` as given, else by its name in the plans folders; nullopt when nowhere.
std::optional<std::string> find_plan_file(const std::string& file) {
  if (fs::is_regular_file(file)) return file;
  if (file.find('/') != std::string::npos) return std::nullopt;
  for (const auto& d : plan_dirs())
    if (fs::is_regular_file(d + "/" + file)) return d + "/" + file;
  return std::nullopt;
}

ShardPlan load_for(const std::string& path, const ModelConfig& config) {
  ShardPlan plan = ShardPlan::load(path);
  try {
    plan.validate_for(config);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
  return plan;
}

std::string looked_in() {
  std::string s = "looked in the working directory";
  for (const auto& d : plan_dirs()) s += ", " + d;
  return s;
}

}  // namespace

ShardPlan plan_from_spec(const std::string& spec, const ModelConfig& config) {
  if (spec.empty()) throw std::invalid_argument("shard plan spec is empty (e.g. dense, s2:stride=8, or a .json file)");
  if (spec.size() > 5 && spec.ends_with(".json")) {
    if (auto path = find_plan_file(spec)) return load_for(*path, config);
    throw std::invalid_argument("shard plan file '" + spec + "' not found (" + looked_in() + ")");
  }
  const auto colon = spec.find(':');
  const std::string generator = spec.substr(0, colon);
  const std::string options = colon == std::string::npos ? "" : spec.substr(colon + 1);
  try {
    if (colon != std::string::npos && options.empty()) bad("no options after ':'");
    std::optional<ShardPlan> plan;
    if (generator == "dense") plan = dense_from(Options(generator, options, {"block"}), config);
    if (generator == "s2")
      plan = s2_from(Options(generator, options,
                             {"stride", "local", "sink", "dense-every", "dense-first", "strided-layers", "block"}),
                     config);
    if (generator == "streaming") plan = streaming_from(Options(generator, options, {"sink", "local", "block"}), config);
    if (generator == "mixed")
      plan = mixed_from(
          Options(generator, options, {"dense-frac", "dense", "sink", "local", "stride", "seed", "block"}), config);
    if (plan) {
      plan->validate_for(config);
      return *plan;
    }
  } catch (const std::invalid_argument& e) {
    // Generator errors already say which plan; spec errors get the spec for context.
    throw std::invalid_argument("shard plan spec '" + spec + "': " + e.what());
  }
  if (colon == std::string::npos)
    if (auto path = find_plan_file(spec + ".json")) return load_for(*path, config);
  throw std::invalid_argument("shard plan spec '" + spec + "': unknown generator '" + generator +
                              "' (expected dense, s2, streaming, mixed, or a .json plan file)");
}

}  // namespace hs
