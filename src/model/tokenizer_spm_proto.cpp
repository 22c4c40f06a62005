#include "model/tokenizer_spm_proto.h"

#include <cstring>
#include <stdexcept>

namespace hs {

namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, uint32_t field, WireType wt) { put_varint(out, (static_cast<uint64_t>(field) << 3) | wt); }
// int32 fields: negative values are sign-extended to 64 bits on the wire (ten bytes).
void put_int32(std::string& out, uint32_t field, int32_t v) {
  put_tag(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(static_cast<int64_t>(v)));
}
void put_bool(std::string& out, uint32_t field, bool v) {
  put_tag(out, field, kVarint);
  put_varint(out, v ? 1 : 0);
}
void put_bytes(std::string& out, uint32_t field, std::string_view v) {
  put_tag(out, field, kLengthDelimited);
  put_varint(out, v.size());
  out.append(v);
}
void put_float(std::string& out, uint32_t field, float v) {
  put_tag(out, field, kFixed32);
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
}

// Reads one message's fields in order; `next` returns false at the end of the message.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  struct Field {
    uint32_t number;
    WireType type;
    uint64_t varint = 0;       // kVarint
    uint32_t fixed32 = 0;      // kFixed32
    std::string_view bytes;    // kLengthDelimited
  };
  bool next(Field& f) {
    if (pos_ >= s_.size()) return false;
    const uint64_t tag = varint();
    f.number = static_cast<uint32_t>(tag >> 3);
    f.type = static_cast<WireType>(tag & 7);
    switch (f.type) {
      case kVarint: f.varint = varint(); break;
      case kFixed64: need(8); pos_ += 8; break;
      case kFixed32: {
        need(4);
        f.fixed32 = 0;
        for (int i = 0; i < 4; ++i) f.fixed32 |= static_cast<uint32_t>(static_cast<uint8_t>(s_[pos_ + i])) << (8 * i);
        pos_ += 4;
        break;
      }
      case kLengthDelimited: {
        const uint64_t len = varint();
        need(len);
        f.bytes = s_.substr(pos_, len);
        pos_ += len;
        break;
      }
      default:
        throw std::runtime_error("SentencePiece model: unsupported protobuf wire type " + std::to_string(f.type));
    }
    return true;
  }

 private:
  void need(uint64_t n) const {
    if (n > s_.size() - pos_) throw std::runtime_error("SentencePiece model: truncated protobuf data");
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      const auto b = static_cast<uint8_t>(s_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("SentencePiece model: malformed varint");
  }
  std::string_view s_;
  size_t pos_ = 0;
};

float as_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

std::string spm_serialize(const SpmModel& m) {
  std::string out;
  for (const SpmPiece& p : m.pieces) {
    std::string msg;
    put_bytes(msg, 1, p.piece);
    put_float(msg, 2, p.score);
    put_int32(msg, 3, static_cast<int32_t>(p.type));
    put_bytes(out, 1, msg);
  }
  std::string trainer;
  put_int32(trainer, 3, static_cast<int32_t>(m.model_type));
  put_int32(trainer, 4, static_cast<int32_t>(m.pieces.size()));  // vocab_size
  put_bool(trainer, 35, m.byte_fallback);
  put_int32(trainer, 40, m.unk_id);
  put_int32(trainer, 41, m.bos_id);
  put_int32(trainer, 42, m.eos_id);
  put_int32(trainer, 43, m.pad_id);
  put_bytes(out, 2, trainer);
  std::string norm;
  put_bytes(norm, 1, m.normalizer_name);
  if (!m.precompiled_charsmap.empty()) put_bytes(norm, 2, m.precompiled_charsmap);
  put_bool(norm, 3, m.add_dummy_prefix);
  put_bool(norm, 4, m.remove_extra_whitespaces);
  put_bool(norm, 5, m.escape_whitespaces);
  put_bytes(out, 3, norm);
  return out;
}

SpmModel spm_parse(std::string_view bytes) {
  SpmModel m;
  Reader top(bytes);
  Reader::Field f;
  while (top.next(f)) {
    if (f.type != kLengthDelimited) continue;
    if (f.number == 1) {
      SpmPiece p;
      Reader r(f.bytes);
      Reader::Field g;
      while (r.next(g)) {
        if (g.number == 1 && g.type == kLengthDelimited) p.piece = std::string(g.bytes);
        if (g.number == 2 && g.type == kFixed32) p.score = as_float(g.fixed32);
        if (g.number == 3 && g.type == kVarint) p.type = static_cast<SpmPieceType>(static_cast<int32_t>(g.varint));
      }
      m.pieces.push_back(std::move(p));
    } else if (f.number == 2) {
      Reader r(f.bytes);
      Reader::Field g;
      while (r.next(g)) {
        if (g.type != kVarint) continue;
        const auto v = static_cast<int32_t>(static_cast<int64_t>(g.varint));
        switch (g.number) {
          case 3: m.model_type = static_cast<SpmModelType>(v); break;
          case 35: m.byte_fallback = v != 0; break;
          case 40: m.unk_id = v; break;
          case 41: m.bos_id = v; break;
          case 42: m.eos_id = v; break;
          case 43: m.pad_id = v; break;
          default: break;
        }
      }
    } else if (f.number == 3) {
      Reader r(f.bytes);
      Reader::Field g;
      while (r.next(g)) {
        switch (g.number) {
          case 1: if (g.type == kLengthDelimited) m.normalizer_name = std::string(g.bytes); break;
          case 2: if (g.type == kLengthDelimited) m.precompiled_charsmap = std::string(g.bytes); break;
          case 3: if (g.type == kVarint) m.add_dummy_prefix = g.varint != 0; break;
          case 4: if (g.type == kVarint) m.remove_extra_whitespaces = g.varint != 0; break;
          case 5: if (g.type == kVarint) m.escape_whitespaces = g.varint != 0; break;
          default: break;
        }
      }
    }
  }
  return m;
}

}  // namespace hs
