#include "model/unicode.h"

#include <algorithm>
#include <array>

namespace hs {

namespace {

// ASCII is by far the most common input; a table avoids the binary search for it.
std::array<UnicodeClass, 128> make_ascii_classes() {
  std::array<UnicodeClass, 128> t{};
  for (char32_t cp = 0; cp < 128; ++cp) {
    const auto* end = unicode_data::kClassRanges + unicode_data::kClassRangeCount;
    const auto* it = std::upper_bound(unicode_data::kClassRanges, end, cp,
                                      [](char32_t c, const unicode_data::ClassRange& r) { return c < r.first; });
    t[cp] = static_cast<UnicodeClass>((it - 1)->cls);
  }
  return t;
}

enum class SeqKind { Valid, Invalid, Incomplete };
struct SeqInfo {
  SeqKind kind;
  size_t len;  // bytes of the valid character, or of the maximal ill-formed subpart
};

// Classifies the sequence starting at s[i] by the well-formed table of Unicode 15 §3.9 (Table 3-7).
SeqInfo classify_sequence(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {SeqKind::Valid, 1};
  size_t n;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {SeqKind::Invalid, 1};
  }
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) return {SeqKind::Incomplete, k};
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {SeqKind::Invalid, k};
  }
  return {SeqKind::Valid, n};
}

}  // namespace

UnicodeClass unicode_class(char32_t cp) {
  static const std::array<UnicodeClass, 128> ascii = make_ascii_classes();
  if (cp < 128) return ascii[cp];
  if (cp > 0x10FFFF) return UnicodeClass::Unassigned;
  const auto* end = unicode_data::kClassRanges + unicode_data::kClassRangeCount;
  const auto* it = std::upper_bound(unicode_data::kClassRanges, end, cp,
                                    [](char32_t c, const unicode_data::ClassRange& r) { return c < r.first; });
  return static_cast<UnicodeClass>((it - 1)->cls);
}

bool unicode_is_whitespace(char32_t cp) {
  if (cp < 128) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return std::binary_search(unicode_data::kWhiteSpace, unicode_data::kWhiteSpace + unicode_data::kWhiteSpaceCount, cp);
}

bool unicode_is_python_space(char32_t cp) { return (cp >= 0x1C && cp <= 0x1F) || unicode_is_whitespace(cp); }

size_t utf8_sequence_length(uint8_t lead) {
  // By the top four bits, as llama.cpp does: 0xxx and 10xx -> 1, 110x -> 2, 1110 -> 3, 1111 -> 4.
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

char32_t utf8_decode(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  auto cont = [&](size_t k) { return pos + k < s.size() && (static_cast<uint8_t>(s[pos + k]) & 0xC0) == 0x80; };
  auto c = [&](size_t k) { return static_cast<char32_t>(static_cast<uint8_t>(s[pos + k]) & 0x3F); };
  char32_t cp;
  if (b0 < 0x80) {
    cp = b0;
    pos += 1;
  } else if ((b0 & 0xE0) == 0xC0 && cont(1)) {
    cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | c(1);
    pos += 2;
  } else if ((b0 & 0xF0) == 0xE0 && cont(1) && cont(2)) {
    cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (c(1) << 6) | c(2);
    pos += 3;
  } else if ((b0 & 0xF8) == 0xF0 && cont(1) && cont(2) && cont(3)) {
    cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (c(1) << 12) | (c(2) << 6) | c(3);
    pos += 4;
  } else {
    cp = kReplacementChar;
    pos += 1;
  }
  return cp;
}

std::vector<char32_t> utf8_to_codepoints(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) out.push_back(utf8_decode(s, pos));
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    // Four bytes also for values past U+10FFFF: they can only come from decoding four bytes.
    out.push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_encode(char32_t cp) {
  std::string s;
  utf8_append(s, cp);
  return s;
}

size_t utf8_complete_prefix(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const SeqInfo info = classify_sequence(s, i);
    if (info.kind == SeqKind::Incomplete) return i;
    i += info.len;
  }
  return s.size();
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const SeqInfo info = classify_sequence(s, i);
    if (info.kind == SeqKind::Valid) {
      out.append(s.substr(i, info.len));
    } else {
      utf8_append(out, kReplacementChar);
    }
    i += info.len;
  }
  return out;
}

}  // namespace hs
