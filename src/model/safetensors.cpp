// Safetensors layout: u64 little-endian header length N, N bytes of JSON
//   { "<name>": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//     "__metadata__": {...} }
// then the data section; offsets are relative to its start (byte 8 + N).
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

namespace hs {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit too

std::string squote(const std::string& s) { return "'" + s + "'"; }

[[noreturn]] void throw_at(const std::string& where, const std::string& what) { throw ModelFileError(where + ": " + what); }

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Maps a whole file read-only; throws ModelFileError.
std::pair<const uint8_t*, size_t> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw ModelFileError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ModelFileError(path + ": not a readable regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    throw ModelFileError(path + ": file truncated: the file is empty");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw ModelFileError(path + ": cannot mmap: " + std::strerror(e));
  return {static_cast<const uint8_t*>(p), size};
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    throw ModelFileError(path + ": bad JSON: " + e.what());
  }
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// dtype name -> (ggml type, bytes per element); nullopt for dtypes we do not load.
std::optional<std::pair<GgmlType, size_t>> dtype_info(const std::string& dtype) {
  if (dtype == "F32") return std::pair{GgmlType::F32, size_t{4}};
  if (dtype == "F16") return std::pair{GgmlType::F16, size_t{2}};
  if (dtype == "BF16") return std::pair{GgmlType::BF16, size_t{2}};
  return std::nullopt;
}

std::string normalize_arch(const json& config) {
  if (auto it = config.find("model_type"); it != config.end() && it->is_string()) {
    const std::string t = it->get<std::string>();
    if (t == "gemma3_text" || t == "gemma3") return "gemma3";
    return t;
  }
  if (auto it = config.find("architectures"); it != config.end() && it->is_array() && !it->empty() &&
                                              (*it)[0].is_string()) {
    const std::string a = (*it)[0].get<std::string>();
    if (starts_with(a, "Gemma3")) return "gemma3";
    if (starts_with(a, "Llama")) return "llama";
  }
  return "";
}

// Gemma 2 and 3 have four norms per layer: their post_attention_layernorm is applied to the
// attention output, while in llama-style models it is the pre-FFN norm.
bool has_sandwich_norms(const std::string& arch) { return arch == "gemma2" || arch == "gemma3"; }

const char* layer_module_name(const std::string& module, const std::string& arch) {
  static const std::pair<const char*, const char*> kTable[] = {
      {"input_layernorm", "attn_norm"},
      {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},
      {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"},
      {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
      {"pre_feedforward_layernorm", "ffn_norm"},
      {"post_feedforward_layernorm", "post_ffw_norm"},
  };
  if (module == "post_attention_layernorm") return has_sandwich_norms(arch) ? "post_attention_norm" : "ffn_norm";
  for (const auto& [hf, gguf] : kTable)
    if (module == hf) return gguf;
  return nullptr;
}

}  // namespace

std::string hf_to_gguf_tensor_name(const std::string& hf_name, const std::string& arch) {
  std::string n = hf_name;
  // Multimodal gemma3 checkpoints nest the text model under a language_model prefix.
  static const std::pair<const char*, const char*> kPrefixes[] = {
      {"model.language_model.", "model."},
      {"language_model.model.", "model."},
      {"language_model.lm_head.", "lm_head."},
  };
  for (const auto& [from, to] : kPrefixes) {
    if (starts_with(n, from)) {
      n = to + n.substr(std::strlen(from));
      break;
    }
  }
  if (n == "model.embed_tokens.weight") return "token_embd.weight";
  if (n == "model.norm.weight") return "output_norm.weight";
  if (n == "lm_head.weight") return "output.weight";

  static const std::string kLayers = "model.layers.";
  if (!starts_with(n, kLayers)) return hf_name;
  size_t p = kLayers.size();
  const size_t digits_begin = p;
  while (p < n.size() && n[p] >= '0' && n[p] <= '9') ++p;
  if (p == digits_begin || p - digits_begin > 9 || p >= n.size() || n[p] != '.') return hf_name;
  const std::string layer = n.substr(digits_begin, p - digits_begin);
  const std::string rest = n.substr(p + 1);  // "self_attn.q_proj.weight"
  const size_t dot = rest.rfind('.');
  if (dot == std::string::npos) return hf_name;
  const std::string param = rest.substr(dot + 1);  // "weight" or "bias"
  if (param != "weight" && param != "bias") return hf_name;
  const char* module = layer_module_name(rest.substr(0, dot), arch);
  if (!module) return hf_name;
  return "blk." + std::to_string(std::stoul(layer)) + "." + module + "." + param;
}

bool is_safetensors_dir(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return false;
  const fs::path d(path);
  return is_file(d / "config.json") && (is_file(d / "model.safetensors") || is_file(d / "model.safetensors.index.json"));
}

SafetensorsModel::~SafetensorsModel() {
  for (const Mapping& m : maps_) ::munmap(const_cast<uint8_t*>(m.base), m.size);
}

const std::string& SafetensorsModel::file_of(size_t i) const { return maps_.at(file_index_.at(i)).path; }

const GgufTensor* SafetensorsModel::find_tensor(const std::string& gguf_name) const {
  auto it = by_name_.find(gguf_name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor* SafetensorsModel::find_hf_tensor(const std::string& hf_name) const {
  auto it = by_hf_name_.find(hf_name);
  return it == by_hf_name_.end() ? nullptr : &tensors_[it->second];
}

// Maps one safetensors file and appends its tensors. With `wanted` (from a shard index: HF name
// -> file name), only the tensors the index assigns to this file are taken, and each of them
// must be present.
void SafetensorsModel::load_file(const std::string& path, const std::map<std::string, std::string>* wanted) {
  Mapping m;
  m.path = path;
  std::tie(m.base, m.size) = map_file(path);
  maps_.push_back(m);  // owned from here on, so unmapped even if parsing throws
  const size_t file_idx = maps_.size() - 1;
  const std::string fname = fs::path(path).filename().string();

  if (m.size < 8) throw_at(path, "file truncated: " + std::to_string(m.size) + " bytes, too short for the header length");
  uint64_t header_len;
  std::memcpy(&header_len, m.base, 8);
  if (header_len > m.size - 8)
    throw_at(path, "file truncated: header length " + std::to_string(header_len) + " exceeds the " + std::to_string(m.size - 8) +
         " bytes after it");
  if (header_len > kMaxHeaderBytes) throw_at(path, "absurd header length " + std::to_string(header_len));
  const size_t data_start = 8 + static_cast<size_t>(header_len);
  const size_t data_size = m.size - data_start;

  json header;
  try {
    header = json::parse(m.base + 8, m.base + data_start);
  } catch (const json::exception& e) {
    throw_at(path, std::string("bad JSON header: ") + e.what());
  }
  if (!header.is_object()) throw_at(path, "bad header: the JSON is not an object");

  struct Entry {
    std::string hf;
    GgufTensor t;
  };
  std::vector<Entry> entries;
  std::set<std::string> found;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    if (wanted) {
      auto it = wanted->find(name);
      if (it == wanted->end() || it->second != fname) continue;  // not ours per the index
    }
    const std::string where = path + ": tensor " + squote(name);
    if (!info.is_object()) throw_at(where, "entry is not an object");
    const auto dt = info.find("dtype");
    const auto shape = info.find("shape");
    const auto offs = info.find("data_offsets");
    if (dt == info.end() || !dt->is_string()) throw_at(where, "missing or non-string 'dtype'");
    if (shape == info.end() || !shape->is_array()) throw_at(where, "missing or non-array 'shape'");
    if (offs == info.end() || !offs->is_array() || offs->size() != 2 || !(*offs)[0].is_number_unsigned() ||
        !(*offs)[1].is_number_unsigned())
      throw_at(where, "'data_offsets' must be two non-negative integers");
    const std::string dtype = dt->get<std::string>();
    const auto ti = dtype_info(dtype);
    if (!ti) throw_at(where, "unsupported dtype " + squote(dtype) + " (only F32, F16 and BF16 are supported)");

    Entry e;
    e.hf = name;
    e.t.type = ti->first;
    uint64_t n = 1;
    for (const json& d : *shape) {
      if (!d.is_number_unsigned()) throw_at(where, "shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || (v != 0 && n > (uint64_t{1} << 62) / v))
        throw_at(where, "absurd shape (element count overflows)");
      n *= v;
      e.t.dims.insert(e.t.dims.begin(), static_cast<int64_t>(v));  // ggml order: innermost first
    }
    if (e.t.dims.empty()) e.t.dims.push_back(1);  // a scalar
    const uint64_t begin = (*offs)[0].get<uint64_t>(), end = (*offs)[1].get<uint64_t>();
    if (begin > end) throw_at(where, "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] are reversed");
    if (end > data_size)
      throw_at(where, "data out of file bounds: data_offsets end " + std::to_string(end) + " is past the " +
            std::to_string(data_size) + "-byte data section (file truncated?)");
    const uint64_t nbytes = n * ti->second;  // n < 2^62, element size <= 4: no overflow
    if (end - begin != nbytes)
      throw_at(where, "data_offsets span " + std::to_string(end - begin) + " bytes but " + dtype + " shape needs " +
            std::to_string(nbytes));
    e.t.offset = begin;
    e.t.nbytes = static_cast<size_t>(nbytes);
    e.t.data = m.base + data_start + begin;
    found.insert(name);
    entries.push_back(std::move(e));
  }
  if (wanted) {
    for (const auto& [name, file] : *wanted)
      if (file == fname && !found.count(name))
        throw_at(path, "tensor " + squote(name) + " is listed in model.safetensors.index.json but missing from this file");
  }

  // File order, which is also the order the writer laid the weights out.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.t.offset < b.t.offset; });
  for (Entry& e : entries) {
    e.t.name = hf_to_gguf_tensor_name(e.hf, arch_);
    if (by_hf_name_.count(e.hf)) throw_at(path, "tensor " + squote(e.hf) + " appears in more than one file");
    if (auto it = by_name_.find(e.t.name); it != by_name_.end())
      throw_at(path, "tensor " + squote(e.hf) + " maps to " + squote(e.t.name) + ", as does " + squote(hf_names_[it->second]));
    by_name_.emplace(e.t.name, tensors_.size());
    by_hf_name_.emplace(e.hf, tensors_.size());
    hf_names_.push_back(e.hf);
    file_index_.push_back(file_idx);
    tensors_.push_back(std::move(e.t));
  }
}

std::unique_ptr<SafetensorsModel> SafetensorsModel::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw ModelFileError(dir + ": not a directory");
  std::unique_ptr<SafetensorsModel> m(new SafetensorsModel());
  m->dir_ = dir;
  const fs::path d(dir);

  const std::string config_path = (d / "config.json").string();
  if (!is_file(config_path)) throw ModelFileError(config_path + ": missing (every Hugging Face model folder has one)");
  m->config_ = std::make_unique<json>(read_json_file(config_path));
  if (!m->config_->is_object()) throw ModelFileError(config_path + ": bad config: the JSON is not an object");
  m->arch_ = normalize_arch(*m->config_);
  if (m->arch_.empty())
    throw ModelFileError(config_path + ": key 'model_type': missing (and 'architectures' names no known family)");

  const fs::path single = d / "model.safetensors";
  const fs::path index = d / "model.safetensors.index.json";
  if (is_file(index)) {
    const std::string index_path = index.string();
    const json idx = read_json_file(index_path);
    const auto wm = idx.is_object() ? idx.find("weight_map") : idx.end();
    if (!idx.is_object() || wm == idx.end() || !wm->is_object())
      throw ModelFileError(index_path + ": key 'weight_map': missing or not an object");
    std::map<std::string, std::string> wanted;
    std::set<std::string> files;
    for (const auto& [name, file] : wm->items()) {
      if (!file.is_string()) throw ModelFileError(index_path + ": tensor " + squote(name) + ": file name is not a string");
      const std::string f = file.get<std::string>();
      // Shards live in the folder itself; refuse names that would reach elsewhere.
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        throw ModelFileError(index_path + ": tensor " + squote(name) + ": bad shard file name " + squote(f));
      wanted.emplace(name, f);
      files.insert(f);
    }
    if (files.empty()) throw ModelFileError(index_path + ": key 'weight_map': lists no tensors");
    for (const std::string& f : files) m->load_file((d / f).string(), &wanted);
  } else if (is_file(single)) {
    m->load_file(single.string(), nullptr);
  } else {
    throw ModelFileError(dir + ": no model.safetensors or model.safetensors.index.json");
  }

  if (is_file(d / "tokenizer.model")) m->tokenizer_model_ = (d / "tokenizer.model").string();
  if (is_file(d / "tokenizer.json")) m->tokenizer_json_ = (d / "tokenizer.json").string();
  return m;
}

}  // namespace hs
