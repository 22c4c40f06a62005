#include "model/tokenizer_pretokenizer.h"

#include <algorithm>
#include <stdexcept>

#include "model/unicode.h"

namespace hs {

namespace {

// The text as code points with their classes, and the current split into chunks (lengths in
// code points). Every stage refines the chunks: it never merges across a chunk boundary.
struct Text {
  std::vector<char32_t> cps;
  std::vector<UnicodeClass> cls;
  std::vector<bool> ws;
};

using Chunks = std::vector<size_t>;

// One chunk [b, e) and queries that answer "no" outside it, like the out-of-range lookups of the
// reference matchers (a chunk end behaves like the end of the text).
struct Span {
  const Text& t;
  size_t b, e;
  bool in(size_t p) const { return p >= b && p < e; }
  char32_t cp(size_t p) const { return in(p) ? t.cps[p] : 0xFFFFFFFF; }
  bool letter(size_t p) const { return in(p) && t.cls[p] == UnicodeClass::Letter; }
  bool number(size_t p) const { return in(p) && t.cls[p] == UnicodeClass::Number; }
  bool space(size_t p) const { return in(p) && t.ws[p]; }
  // [^\s\p{L}\p{N}]
  bool other(size_t p) const {
    return in(p) && !t.ws[p] && t.cls[p] != UnicodeClass::Letter && t.cls[p] != UnicodeClass::Number;
  }
};

// Collects the pieces of one chunk; `cut(end)` closes the piece that runs up to `end`.
struct Cutter {
  Chunks& out;
  size_t prev;
  void cut(size_t end) {
    if (end > prev) out.push_back(end - prev);
    prev = end;
  }
};

template <typename F>
Chunks for_each_chunk(const Text& t, const Chunks& in, F&& f) {
  Chunks out;
  out.reserve(in.size() * 2);
  size_t start = 0;
  for (size_t len : in) {
    Span s{t, start, start + len};
    Cutter c{out, start};
    f(s, c);
    start += len;
  }
  return out;
}

// "X" as a regex stage: every code point matching X becomes its own chunk.
template <typename Pred>
Chunks isolate_each(const Text& t, const Chunks& in, Pred pred) {
  return for_each_chunk(t, in, [&](const Span& s, Cutter& c) {
    for (size_t p = s.b; p < s.e; ++p) {
      if (pred(p)) {
        c.cut(p);
        c.cut(p + 1);
      }
    }
    c.cut(s.e);
  });
}

// "X+" as a regex stage: every maximal run of code points matching X becomes its own chunk.
template <typename Pred>
Chunks isolate_runs(const Text& t, const Chunks& in, Pred pred) {
  return for_each_chunk(t, in, [&](const Span& s, Cutter& c) {
    for (size_t p = s.b; p < s.e;) {
      if (!pred(p)) {
        ++p;
        continue;
      }
      c.cut(p);
      while (p < s.e && pred(p)) ++p;
      c.cut(p);
    }
    c.cut(s.e);
  });
}

// "[0-9][0-9][0-9]": non-overlapping triples of ASCII digits, scanning left to right.
Chunks isolate_digit_triples(const Text& t, const Chunks& in) {
  auto digit = [&](const Span& s, size_t p) { return s.in(p) && t.cps[p] >= '0' && t.cps[p] <= '9'; };
  return for_each_chunk(t, in, [&](const Span& s, Cutter& c) {
    for (size_t p = s.b; p < s.e;) {
      if (digit(s, p) && digit(s, p + 1) && digit(s, p + 2)) {
        c.cut(p);
        c.cut(p + 3);
        p += 3;
      } else {
        ++p;
      }
    }
    c.cut(s.e);
  });
}

bool ascii_contraction_1(char32_t c) { return c == 's' || c == 't' || c == 'm' || c == 'd'; }
bool ascii_contraction_2(char32_t c1, char32_t c2) {
  return (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l');
}
char32_t ascii_lower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (\s+(?!\S) is approximated as the reference does: a whitespace run followed by a non-space
// keeps its last character for the next piece; at the end of a chunk the run is taken whole.)
Chunks split_gpt2(const Text& t, const Chunks& in) {
  return for_each_chunk(t, in, [&](const Span& s, Cutter& c) {
    size_t pos = s.b;
    while (pos < s.e) {
      const char32_t cp = s.cp(pos);
      if (cp == '\'' && pos + 1 < s.e) {
        const char32_t n1 = s.cp(pos + 1);
        if (ascii_contraction_1(n1)) {
          pos += 2;
          c.cut(pos);
          continue;
        }
        if (pos + 2 < s.e && ascii_contraction_2(n1, s.cp(pos + 2))) {
          pos += 3;
          c.cut(pos);
          continue;
        }
      }
      const size_t q = cp == ' ' ? pos + 1 : pos;  // the optional leading space
      if (s.letter(q) || s.number(q) || s.other(q)) {
        const bool letter = s.letter(q), number = s.number(q);
        pos = q;
        if (letter) {
          while (s.letter(pos)) ++pos;
        } else if (number) {
          while (s.number(pos)) ++pos;
        } else {
          while (s.other(pos)) ++pos;
        }
        c.cut(pos);
        continue;
      }
      size_t n_ws = 0;
      while (s.space(pos + n_ws)) ++n_ws;
      if (n_ws > 1 && s.in(pos + n_ws)) {
        pos += n_ws - 1;
      } else if (n_ws > 0) {
        pos += n_ws;
      } else {
        pos += 1;  // nothing matches (cannot happen inside a chunk, kept for safety)
      }
      c.cut(pos);
    }
  });
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
Chunks split_llama3(const Text& t, const Chunks& in, size_t max_digits) {
  return for_each_chunk(t, in, [&](const Span& s, Cutter& c) {
    size_t pos = s.b;
    auto is_rn = [](char32_t x) { return x == '\r' || x == '\n'; };
    while (pos < s.e) {
      const char32_t cp = s.cp(pos);
      if (cp == '\'' && pos + 1 < s.e) {
        const char32_t n1 = ascii_lower(s.cp(pos + 1));
        if (ascii_contraction_1(n1)) {
          pos += 2;
          c.cut(pos);
          continue;
        }
        if (pos + 2 < s.e && ascii_contraction_2(n1, ascii_lower(s.cp(pos + 2)))) {
          pos += 3;
          c.cut(pos);
          continue;
        }
      }
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (!is_rn(cp) && !s.number(pos) && (s.letter(pos) || s.letter(pos + 1))) {
        ++pos;
        while (s.letter(pos)) ++pos;
        c.cut(pos);
        continue;
      }
      // \p{N}{1,max_digits}
      if (s.number(pos)) {
        size_t run_start = pos;
        while (s.number(pos)) {
          ++pos;
          if (pos - run_start >= max_digits) {
            c.cut(pos);
            run_start = pos;
          }
        }
        c.cut(pos);
        continue;
      }
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      const size_t q = cp == ' ' ? pos + 1 : pos;
      if (s.other(q)) {
        pos = q;
        while (s.other(pos)) ++pos;
        while (s.in(pos) && is_rn(s.cp(pos))) ++pos;
        c.cut(pos);
        continue;
      }
      size_t n_ws = 0, last_rn_end = 0;
      while (s.space(pos + n_ws)) {
        if (is_rn(s.cp(pos + n_ws))) last_rn_end = pos + n_ws + 1;
        ++n_ws;
      }
      if (last_rn_end > 0) {  // \s*[\r\n]+
        pos = last_rn_end;
      } else if (n_ws > 1 && s.in(pos + n_ws)) {  // \s+(?!\S)
        pos += n_ws - 1;
      } else if (n_ws > 0) {  // \s+
        pos += n_ws;
      } else {
        pos += 1;
      }
      c.cut(pos);
    }
  });
}

}  // namespace

BpePreTokenizer BpePreTokenizer::from_gguf_name(const std::string& name) {
  auto any_of = [&](std::initializer_list<const char*> names) {
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; });
  };
  BpePreTokenizer p;
  if (name.empty() || name == "default") {
    p.kind = BpePreTokenizerKind::Default;
  } else if (any_of({"gpt2", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                     "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo", "jais", "trillion", "granite-docling",
                     "exaone4"})) {
    p.kind = BpePreTokenizerKind::Gpt2;
  } else if (any_of({"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b",
                     "mellum2"})) {
    p.kind = BpePreTokenizerKind::StarCoder;
  } else if (any_of({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
    p.kind = BpePreTokenizerKind::Llama3;
    p.ignore_merges = true;
  } else if (any_of({"dbrx", "smaug-bpe"})) {
    p.kind = BpePreTokenizerKind::Llama3;
  } else if (any_of({"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"})) {
    p.kind = BpePreTokenizerKind::Qwen2;
  } else {
    throw std::invalid_argument("unsupported BPE pre-tokenizer '" + name +
                                "' (supported: default, gpt2, smollm/starcoder, llama3, qwen2 families)");
  }
  return p;
}

const char* BpePreTokenizer::name() const {
  switch (kind) {
    case BpePreTokenizerKind::Default: return "default";
    case BpePreTokenizerKind::Gpt2: return "gpt2";
    case BpePreTokenizerKind::StarCoder: return "starcoder";
    case BpePreTokenizerKind::Llama3: return "llama3";
    case BpePreTokenizerKind::Qwen2: return "qwen2";
  }
  return "?";
}

std::vector<std::string> BpePreTokenizer::split(std::string_view text) const {
  Text t;
  t.cps = utf8_to_codepoints(text);
  if (t.cps.empty()) return {};
  t.cls.resize(t.cps.size());
  t.ws.resize(t.cps.size());
  for (size_t i = 0; i < t.cps.size(); ++i) {
    t.cls[i] = unicode_class(t.cps[i]);
    t.ws[i] = unicode_is_whitespace(t.cps[i]);
  }
  auto is_number = [&](size_t p) { return t.cls[p] == UnicodeClass::Number; };

  Chunks chunks{t.cps.size()};
  switch (kind) {
    case BpePreTokenizerKind::Gpt2:
      chunks = split_gpt2(t, chunks);
      break;
    case BpePreTokenizerKind::StarCoder:
      chunks = isolate_each(t, chunks, is_number);
      chunks = split_gpt2(t, chunks);
      break;
    case BpePreTokenizerKind::Llama3:
      chunks = split_llama3(t, chunks, 3);
      break;
    case BpePreTokenizerKind::Qwen2:
      chunks = split_llama3(t, chunks, 1);
      break;
    case BpePreTokenizerKind::Default: {
      auto punct = [&](size_t p) {
        const char32_t c = t.cps[p];
        return t.cls[p] == UnicodeClass::Punctuation || c == '$' || c == '+' || c == '<' || c == '=' ||
               c == '>' || c == '^' || c == '~' || c == '|';
      };
      chunks = isolate_runs(t, chunks, punct);
      chunks = split_gpt2(t, chunks);
      chunks = isolate_runs(t, chunks, is_number);
      chunks = isolate_digit_triples(t, chunks);
      break;
    }
  }

  std::vector<std::string> words;
  words.reserve(chunks.size());
  size_t start = 0;
  for (size_t len : chunks) {
    std::string w;
    for (size_t i = start; i < start + len; ++i) utf8_append(w, t.cps[i]);
    words.push_back(std::move(w));
    start += len;
  }
  return words;
}

}  // namespace hs
