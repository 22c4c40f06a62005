#include "model/tokenizer_spm.h"

#include <sentencepiece_processor.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "model/gguf.h"

namespace hs {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // ▁ (U+2581)

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t at = 0;
  for (size_t pos; (pos = s.find(from, at)) != std::string_view::npos; at = pos + from.size()) {
    out.append(s, at, pos - at);
    out.append(to);
  }
  out.append(s, at);
  return out;
}

bool is_byte_piece(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

TokenType token_type_of(SpmPieceType t) {
  switch (t) {
    case SpmPieceType::Normal: return TokenType::Normal;
    case SpmPieceType::Unknown: return TokenType::Unknown;
    case SpmPieceType::Control: return TokenType::Control;
    case SpmPieceType::UserDefined: return TokenType::UserDefined;
    case SpmPieceType::Unused: return TokenType::Unused;
    case SpmPieceType::Byte: return TokenType::Byte;
  }
  return TokenType::Normal;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer() = default;
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

SpmModel SentencePieceTokenizer::model_from_gguf(const GgufFile& gguf) {
  const std::string& path = gguf.path();
  const std::vector<std::string> tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  const auto n = static_cast<int32_t>(tokens.size());
  std::vector<double> scores;
  if (gguf.has("tokenizer.ggml.scores")) scores = gguf.get_float_array("tokenizer.ggml.scores");
  std::vector<int64_t> types;
  if (gguf.has("tokenizer.ggml.token_type")) types = gguf.get_int_array("tokenizer.ggml.token_type");
  if ((!scores.empty() && scores.size() != tokens.size()) || (!types.empty() && types.size() != tokens.size()))
    throw ModelFileError(path + ": tokenizer.ggml.scores/token_type do not have one entry per token");
  auto type_of = [&](int32_t id) { return types.empty() ? TokenType::Normal : static_cast<TokenType>(types[id]); };

  // SentencePiece needs exactly one unknown piece: the declared one, else the first of that type.
  int32_t unk = -1;
  if (auto u = gguf.opt_int("tokenizer.ggml.unknown_token_id"); u && *u >= 0 && *u < n) unk = static_cast<int32_t>(*u);
  for (int32_t id = 0; id < n && unk < 0; ++id)
    if (type_of(id) == TokenType::Unknown) unk = id;

  int byte_count = 0;
  std::set<std::string> byte_texts;
  for (int32_t id = 0; id < n; ++id)
    if (type_of(id) == TokenType::Byte && is_byte_piece(tokens[id]) && byte_texts.insert(tokens[id]).second) ++byte_count;

  SpmModel m;
  // llama.cpp runs every "llama" vocabulary with score-ordered pair merging, which is
  // SentencePiece's BPE algorithm; Unigram models come as tokenizer.model files (from_file).
  m.model_type = SpmModelType::Bpe;
  m.byte_fallback = byte_count == 256;
  m.normalizer_name = "identity";
  m.add_dummy_prefix = gguf.opt_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  m.remove_extra_whitespaces = false;
  m.escape_whitespaces = true;
  m.pieces.resize(n);
  std::set<std::string> seen;
  for (int32_t id = 0; id < n; ++id) {
    SpmPiece& p = m.pieces[id];
    p.score = scores.empty() ? 0.0f : static_cast<float>(scores[id]);
    p.piece = tokens[id];
    switch (type_of(id)) {
      case TokenType::Unknown: p.type = SpmPieceType::Control; break;  // the chosen unk is set below
      case TokenType::Control: p.type = SpmPieceType::Control; break;
      case TokenType::UserDefined:
        // GGUF converters store the spaces of user-defined tokens as ' '; SentencePiece sees
        // escaped text, so give it back the ▁ form.
        p.type = SpmPieceType::UserDefined;
        p.piece = replace_all(p.piece, " ", kSpaceSymbol);
        break;
      case TokenType::Unused: p.type = SpmPieceType::Unused; break;
      case TokenType::Byte:
        p.type = (m.byte_fallback && is_byte_piece(p.piece)) ? SpmPieceType::Byte : SpmPieceType::Control;
        break;
      default: p.type = SpmPieceType::Normal; break;
    }
    if (id == unk) p.type = SpmPieceType::Unknown;
    // SentencePiece rejects empty and repeated pieces; such tokens can never be produced from
    // text anyway, so they become control pieces with a unique name.
    if (p.piece.empty() || !seen.insert(p.piece).second) {
      p.piece = "\xEF\xBF\xBEhs-placeholder-" + std::to_string(id);
      p.type = SpmPieceType::Control;
      seen.insert(p.piece);
    }
  }
  if (unk < 0) {
    if (!m.byte_fallback) throw ModelFileError(path + ": SentencePiece vocabulary has no unknown token and no byte tokens");
    // Never produced (byte fallback replaces unknown pieces) but required by SentencePiece.
    unk = n;
    m.pieces.push_back({"\xEF\xBF\xBEhs-unk", 0.0f, SpmPieceType::Unknown});
  }
  m.unk_id = unk;
  auto opt_id = [&](const char* key) {
    auto v = gguf.opt_int(key);
    return (v && *v >= 0 && *v < n) ? static_cast<int32_t>(*v) : -1;
  };
  m.bos_id = opt_id("tokenizer.ggml.bos_token_id");
  m.eos_id = opt_id("tokenizer.ggml.eos_token_id");
  m.pad_id = opt_id("tokenizer.ggml.padding_token_id");
  return m;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_gguf(const GgufFile& gguf) {
  const SpmModel m = model_from_gguf(gguf);
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  t->tokens_ = gguf.get_string_array("tokenizer.ggml.tokens");
  if (gguf.has("tokenizer.ggml.token_type")) {
    for (int64_t v : gguf.get_int_array("tokenizer.ggml.token_type")) t->types_.push_back(static_cast<TokenType>(v));
  } else {
    t->types_.assign(t->tokens_.size(), TokenType::Normal);
  }
  t->bos_id_ = m.bos_id;
  t->eos_id_ = m.eos_id;
  t->add_bos_ = gguf.opt_bool("tokenizer.ggml.add_bos_token").value_or(true) && m.bos_id >= 0;
  t->decode_strips_leading_space_ = m.add_dummy_prefix;
  std::vector<int32_t> extra_eog;
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = gguf.opt_int(key); id && *id >= 0 && *id < static_cast<int64_t>(t->tokens_.size()))
      extra_eog.push_back(static_cast<int32_t>(*id));
  }
  try {
    t->init(spm_serialize(m), gguf.path(), false, extra_eog);
  } catch (const std::runtime_error& e) {
    throw ModelFileError(e.what());
  }
  return t;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_serialized(const std::string& bytes,
                                                                                const std::string& origin) {
  const SpmModel m = spm_parse(bytes);
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  for (const SpmPiece& p : m.pieces) {
    t->tokens_.push_back(p.piece);
    t->types_.push_back(token_type_of(p.type));
  }
  const auto n = static_cast<int32_t>(m.pieces.size());
  t->bos_id_ = m.bos_id >= 0 && m.bos_id < n ? m.bos_id : -1;
  t->eos_id_ = m.eos_id >= 0 && m.eos_id < n ? m.eos_id : -1;
  t->add_bos_ = t->bos_id_ >= 0;
  t->decode_strips_leading_space_ = m.add_dummy_prefix;
  t->init(bytes, origin, true, {});
  return t;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open SentencePiece model " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_serialized(ss.str(), path);
}

void SentencePieceTokenizer::init(const std::string& serialized, const std::string& origin, bool unescape_user_defined,
                                  const std::vector<int32_t>& extra_eog) {
  sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = sp_->LoadFromSerializedProto(serialized);
  if (!status.ok()) throw std::runtime_error(origin + ": SentencePiece cannot load the vocabulary: " + status.ToString());
  if (sp_->GetPieceSize() < vocab_size())
    throw std::runtime_error(origin + ": SentencePiece model has fewer pieces than the vocabulary");
  finish_vocab(extra_eog);
  for (int32_t id = 0; id < vocab_size(); ++id) {
    const TokenType t = types_[id];
    if (t == TokenType::Control || t == TokenType::Unknown) special_.add(id, tokens_[id], false);
    if (t == TokenType::UserDefined)
      special_.add(id, unescape_user_defined ? replace_all(tokens_[id], kSpaceSymbol, " ") : tokens_[id], true);
  }
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  std::vector<int> ids;
  for (const TextFragment& f : special_.split(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      continue;
    }
    ids.clear();
    const auto status = sp_->Encode(text.substr(f.begin, f.length), &ids);
    if (!status.ok()) throw std::runtime_error("SentencePiece encode failed: " + status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

std::string SentencePieceTokenizer::token_to_piece(int32_t id, bool render_special) const {
  const std::string& text = tokens_.at(id);
  switch (types_[id]) {
    case TokenType::Control:
    case TokenType::Unknown:
      return render_special ? text : std::string();
    case TokenType::Byte:
      if (is_byte_piece(text)) return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
      return text;
    default:
      return replace_all(text, kSpaceSymbol, " ");
  }
}

}  // namespace hs
