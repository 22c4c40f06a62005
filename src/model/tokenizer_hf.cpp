// Tokenizer::from_hf_dir: a Hugging Face model folder.
//
// tokenizer.model (SentencePiece) is preferred; otherwise tokenizer.json must describe a
// byte-level BPE model whose pre-tokenizer is one BpePreTokenizer reproduces (recognised by its
// structure and split regex). BOS/EOS come from tokenizer_config.json (token texts), then
// config.json (ids); add_bos from tokenizer_config.json's add_bos_token, else from whether the
// post-processor template starts with BOS.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "model/tokenizer.h"
#include "model/tokenizer_bpe.h"
#include "model/tokenizer_spm.h"

namespace hs {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw std::runtime_error(p.string() + ": invalid JSON: " + e.what());
  }
}

std::optional<json> read_json_if_exists(const fs::path& p) {
  if (!fs::exists(p)) return std::nullopt;
  return read_json(p);
}

// "bos_token": "<s>" or {"content": "<s>", ...} or null.
std::optional<std::string> config_token_text(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

// "eos_token_id": 2 or [1, 106].
std::vector<int32_t> token_ids(const json& cfg, const char* key) {
  std::vector<int32_t> ids;
  auto it = cfg.find(key);
  if (it == cfg.end()) return ids;
  if (it->is_number_integer()) ids.push_back(it->get<int32_t>());
  if (it->is_array())
    for (const json& v : *it)
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
  return ids;
}

// The pre-tokenizer a tokenizer.json describes, or an exception naming what was found.
BpePreTokenizer pre_tokenizer_of(const json& tj, const std::string& origin) {
  static const std::string kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  static const std::string kLlama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const std::string kQwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

  const json pre = tj.value("pre_tokenizer", json());
  std::vector<json> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence") {
    for (const json& s : pre.value("pretokenizers", json::array())) steps.push_back(s);
  } else if (pre.is_object()) {
    steps.push_back(pre);
  }
  bool digits = false, byte_level_regex = false, byte_level = false;
  std::string split_regex;
  for (const json& s : steps) {
    const std::string type = s.value("type", "");
    if (type == "Digits" && s.value("individual_digits", false)) {
      digits = true;
    } else if (type == "ByteLevel") {
      byte_level = true;
      byte_level_regex = s.value("use_regex", true);
      if (s.value("add_prefix_space", false))
        throw std::runtime_error(origin + ": ByteLevel pre-tokenizer with add_prefix_space is not supported");
    } else if (type == "Split" && s.contains("pattern") && s["pattern"].contains("Regex")) {
      split_regex = s["pattern"]["Regex"].get<std::string>();
    } else {
      throw std::runtime_error(origin + ": unsupported pre-tokenizer step '" + s.dump() + "'");
    }
  }
  BpePreTokenizer p;
  if (byte_level && split_regex.empty() && byte_level_regex) {
    p.kind = digits ? BpePreTokenizerKind::StarCoder : BpePreTokenizerKind::Gpt2;
  } else if (byte_level && !byte_level_regex && !digits && split_regex == kLlama3) {
    p.kind = BpePreTokenizerKind::Llama3;
  } else if (byte_level && !byte_level_regex && !digits && split_regex == kQwen2) {
    p.kind = BpePreTokenizerKind::Qwen2;
  } else if (byte_level && !byte_level_regex && !digits && split_regex == kGpt2) {
    p.kind = BpePreTokenizerKind::Gpt2;
  } else {
    throw std::runtime_error(origin + ": pre-tokenizer not recognised: " + pre.dump());
  }
  p.ignore_merges = tj["model"].value("ignore_merges", false);
  return p;
}

std::unique_ptr<BpeTokenizer> bpe_from_tokenizer_json(const fs::path& path, const json& tcfg, const json& mcfg) {
  const std::string origin = path.string();
  const json tj = read_json(path);
  const json& model = tj.at("model");
  if (model.value("type", "") != "BPE") throw std::runtime_error(origin + ": only BPE models are supported in tokenizer.json");
  if (tj.contains("normalizer") && !tj["normalizer"].is_null() && tj["normalizer"].value("type", "") != "NFC")
    throw std::runtime_error(origin + ": unsupported normalizer " + tj["normalizer"].dump());

  BpeTokenizer::Vocab v;
  v.pre = pre_tokenizer_of(tj, origin);
  auto place = [&](int64_t id, const std::string& text, TokenType type) {
    if (id < 0 || id > 10'000'000) throw std::runtime_error(origin + ": token id " + std::to_string(id) + " out of range");
    if (static_cast<size_t>(id) >= v.tokens.size()) {
      v.tokens.resize(id + 1);
      v.types.resize(id + 1, TokenType::Unused);  // holes stay unused
    }
    v.tokens[id] = text;
    v.types[id] = type;
  };
  for (const auto& [text, id] : model.at("vocab").items()) place(id.get<int64_t>(), text, TokenType::Normal);
  for (const json& a : tj.value("added_tokens", json::array()))
    place(a.at("id").get<int64_t>(), a.at("content").get<std::string>(),
          a.value("special", false) ? TokenType::Control : TokenType::UserDefined);
  for (const json& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      v.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2) {
      v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      throw std::runtime_error(origin + ": malformed merge " + m.dump());
    }
  }

  auto find = [&](const std::string& text) -> int32_t {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == text) return static_cast<int32_t>(i);
    return -1;
  };
  if (auto t = config_token_text(tcfg, "bos_token")) v.bos_id = find(*t);
  if (auto t = config_token_text(tcfg, "eos_token")) v.eos_id = find(*t);
  if (v.bos_id < 0) {
    const auto ids = token_ids(mcfg, "bos_token_id");
    if (!ids.empty()) v.bos_id = ids[0];
  }
  const auto eos_ids = token_ids(mcfg, "eos_token_id");
  if (v.eos_id < 0 && !eos_ids.empty()) v.eos_id = eos_ids[0];
  v.extra_eog = eos_ids;
  if (tcfg.contains("add_bos_token") && tcfg["add_bos_token"].is_boolean()) {
    v.add_bos = tcfg["add_bos_token"].get<bool>();
  } else {
    // A TemplateProcessing post-processor whose single-sequence template starts with a special
    // token adds that token (Llama 3 adds <|begin_of_text|> this way).
    const json pp = tj.value("post_processor", json());
    std::vector<json> procs;
    if (pp.is_object() && pp.value("type", "") == "Sequence") {
      for (const json& p : pp.value("processors", json::array())) procs.push_back(p);
    } else if (pp.is_object()) {
      procs.push_back(pp);
    }
    for (const json& p : procs) {
      if (p.value("type", "") != "TemplateProcessing" || !p.contains("single") || p["single"].empty()) continue;
      const json& first = p["single"][0];
      if (first.contains("SpecialToken") && v.bos_id >= 0 && first["SpecialToken"].value("id", "") == v.tokens[v.bos_id])
        v.add_bos = true;
    }
  }
  return std::make_unique<BpeTokenizer>(std::move(v));
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  const fs::path d(dir);
  const json tcfg = read_json_if_exists(d / "tokenizer_config.json").value_or(json::object());
  const json mcfg = read_json_if_exists(d / "config.json").value_or(json::object());

  if (fs::exists(d / "tokenizer.model")) {
    std::unique_ptr<Tokenizer> t = SentencePieceTokenizer::from_file((d / "tokenizer.model").string());
    Tokenizer& base = *t;
    // The folder's configuration overrides the ids stored in the model file.
    if (auto text = config_token_text(tcfg, "bos_token"); text && base.find_token(*text)) base.bos_id_ = *base.find_token(*text);
    if (auto text = config_token_text(tcfg, "eos_token"); text && base.find_token(*text)) base.eos_id_ = *base.find_token(*text);
    if (tcfg.contains("add_bos_token") && tcfg["add_bos_token"].is_boolean()) base.add_bos_ = tcfg["add_bos_token"].get<bool>();
    base.add_bos_ = base.add_bos_ && base.bos_id_ >= 0;
    std::vector<int32_t> extra;
    for (int32_t id : token_ids(mcfg, "eos_token_id"))
      if (id >= 0 && id < base.vocab_size()) extra.push_back(id);
    base.finish_vocab(extra);
    return t;
  }
  if (fs::exists(d / "tokenizer.json")) return bpe_from_tokenizer_json(d / "tokenizer.json", tcfg, mcfg);
  throw std::runtime_error(dir + ": neither tokenizer.model nor tokenizer.json found");
}

}  // namespace hs
