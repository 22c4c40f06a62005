#!/usr/bin/env python3
"""Writes tests/golden/tokenizer_smollm2.json and tests/golden/tokenizer_gemma3.json: token ids
for a fixed, deterministic set of test strings, produced by an independent implementation,
llama.cpp's tokenizer through llama-cpp-python:

    Llama(model_path, vocab_only=True).tokenize(text.encode(), add_bos=..., special=...)

Run it with the interpreter that has llama_cpp installed (from the repository root):

    /opt/llamacpp/bin/python scripts/make-tokenizer-golden.py [--models DIR]

Every case records text, add_bos, parse_special and the reference ids. "roundtrip" says whether
the reference gives the text back: detokenize(tokenize(text, add_bos=False), special=True) ==
text; the C++ test checks decode(encode(s)) == s exactly for those.
"""
import argparse
import json
import os
import random
import sys

import llama_cpp
from llama_cpp import Llama

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
# The llama.cpp commit vendored by the llama-cpp-python build the committed goldens came from.
LLAMA_CPP_COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"

ENGLISH = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox jumps over the lazy dog",
    "A",
    "a",
    "I",
    "Once upon a time, there was a little girl named Lily.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Tokenization splits text into sub-word units; BPE merges frequent pairs.",
    "e.g. i.e. etc. Mr. Mrs. Dr. St. U.S.A.",
    "well-known, state-of-the-art, up-to-date",
    "email: someone@example.com, url: https://example.org/path?q=1&x=y#frag",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "CamelCaseIdentifier snake_case_identifier kebab-case-identifier SCREAMING_CASE",
    "\"Quoted\" 'single' `backticks` «guillemets» “curly” ‘quotes’",
    "Ellipsis... and em—dash – en-dash",
    "(parentheses) [brackets] {braces} <angles>",
    "50% off! Only $19.99 (was $39.99) + tax = €25,00",
    "#hashtag @mention ~tilde ^caret |pipe| \\backslash/",
    "Question? Exclamation! Interrobang?! Multiple???",
    "New\nline",
    "Line one.\nLine two.\n\nParagraph two.",
    "The year 2024 was followed by 2025.",
    "I have 3 apples and 12 oranges.",
    "A sentence with trailing space ",
    " A sentence with leading space",
    "  two leading spaces",
    "two trailing spaces  ",
    "   ",
    " ",
    "\n",
    "\t",
    "x",
    "!",
    "Hi",
    "ok.",
    "Don't stop me now, I'm having such a good time.",
]

CONTRACTIONS = [
    "it's", "It's", "IT'S", "it'S", "he'll", "HE'LL", "He'Ll", "they're", "THEY'RE", "we've", "WE'VE",
    "I'm", "I'M", "she'd", "SHE'D", "can't", "CAN'T", "won't", "y'all", "o'clock", "rock'n'roll",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "' s", "''s", "don’t (curly)",
    "The dog's bone and the cats' toys", "'quoted' words", "L'Oréal l'été",
]

CODE = [
    "def add(a, b):\n    return a + b\n",
    "import numpy as np\n\nx = np.arange(10)\nprint(x.sum())",
    "class Foo(Bar):\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n        self._cache = {}\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(f\"{i} is even\")\n",
    "lambda x: x**2 if x > 0 else -x",
    "#include <iostream>\n\nint main() {\n    std::cout << \"Hello\" << std::endl;\n    return 0;\n}\n",
    "template <typename T>\nstd::vector<T> f(const std::vector<T>& v) { return {v.rbegin(), v.rend()}; }",
    "auto p = std::make_unique<Foo>(42); p->bar(); if (x != nullptr && y >= 3) { z <<= 2; }",
    "int* ptr = &arr[0]; *ptr++ = 0x7FFFFFFF; // comment\n/* block */",
    "{\"name\": \"headshard\", \"version\": [0, 1, 0], \"ok\": true, \"null\": null}",
    "{\n  \"key\": \"value\",\n  \"nested\": {\"a\": 1.5e-3, \"b\": [1, 2, 3]}\n}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<html><body><table><tr><td>cell</td></tr></table></body></html>",
    "<div class=\"x\"><span>text</span><b>bold</b><i>it</i><code>c</code></div>",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
    "$ ls -la | grep \"\\.py$\" && echo done || exit 1",
    "    indented with four spaces\n        and eight",
    "\t\ttwo tabs\n\t\t\tthree tabs",
    "x=1;y=2;z=x+y;print(z)",
    "a[i][j] += b[k] * c->d.e",
    "if __name__ == \"__main__\":\n    main()",
    "console.log(`template ${literal}`); const f = (a) => a ?? 0;",
    "// TODO(user): fix this!!!\n#define MAX(a,b) ((a)>(b)?(a):(b))",
    "x = [1,2,3]\ny = {'a':1}\n",
    "0x1F 0b1010 0o777 1e10 3.14159 -2.5E-3",
    "path/to/file.txt C:\\Windows\\System32 ../relative/./path",
    "```python\nprint('hi')\n```",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "key1=value1&key2=value2",
    "<?xml version=\"1.0\"?><root attr='v'/>",
]

NUMBERS = [
    "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789", "1234567890",
    "3.14159265358979323846", "1,000,000", "1 000 000", "-42", "+7", "1e-9", "2^10=1024", "100%",
    "007", "0000000000", "9" * 50, "31415926535897932384626433832795028841971693993751058209749445923",
    "Phone: +1 (555) 123-4567", "IPv4 192.168.0.1 and IPv6 ::1", "Dates: 2024-01-31, 31/01/2024, 01.31.24",
    "Time 12:34:56.789", "v1.2.3-rc.4+build.5", "٠١٢٣٤٥٦٧٨٩", "१२३", "①②③", "½ ¼ ¾", "Ⅻ ⅻ", "²³¹",
    "１２３", "a1b2c3", "1a2b3c", " 1", " 12 34 567 8901",
]

WHITESPACE = [
    " " * n for n in (1, 2, 3, 4, 5, 8, 16, 31, 32, 33, 40, 64)
] + [
    "\t" * n for n in (1, 2, 3, 8, 33)
] + [
    "\n" * n for n in (1, 2, 3, 4, 10, 31, 32, 40)
] + [
    "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \n ", "\t\n", "\n\t", " \t \t ", "\t \n \r\n",
    "a b", "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \nb", "a\n b", "a \t b",
    "word   ", "   word", "   word   ", "\n\nword\n\n", "\tword\t", "a    \n    b",
    "\u00a0", "a\u00a0b", "\u2003em space", "\u3000ideographic", "a\u2028b", "a\u2029b", "\u0085next line",
    "\u200bzero\u200bwidth", "\ufeffBOM", "\u2009thin\u2009space", "\u202fnarrow",
]

ACCENTS = [
    "café", "naïve", "résumé", "über", "Äpfel Öl Übel", "Straße", "ﬁ ligature", "mañana", "Ångström",
    "Crème brûlée", "déjà vu", "Ça va? Très bien.", "Zürich Köln München", "São Paulo", "Łódź", "Dvořák",
    "e\u0301 (combining acute)", "a\u0308o\u0308u\u0308", "Ñ ñ Ç ç Ø ø Æ æ Œ œ", "Ἀθῆναι", "İstanbul ıi",
    "Ελληνικά κείμενα", "Привет, мир! Как дела?", "Україна", "Ǆ ǅ ǆ",
]

SCRIPTS = [
    "你好，世界！", "我爱自然语言处理。", "今天天气很好，我们去公园散步吧。", "中文English混合text",
    "こんにちは世界", "カタカナとひらがなと漢字", "日本語のテキスト、句読点。", "ｶﾀｶﾅ",
    "안녕하세요 세계", "한국어 텍스트입니다.", "𠀋𡈽𡌛 (CJK Ext B)",
    "مرحبا بالعالم", "السلام عليكم ورحمة الله", "العربية: ١٢٣", "שלום עולם", "नमस्ते दुनिया",
    "हिन्दी में लिखा गया पाठ", "สวัสดีชาวโลก", "ภาษาไทย", "ሰላም ዓለም", "Γειά σου Κόσμε", "Բարեւ աշխարհ",
    "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙", "Ｆｕｌｌｗｉｄｔｈ", "ॐ मणि पद्मे हूं", "தமிழ்", "ქართული",
]

EMOJI = [
    "😀", "😀😃😄", "Hello 👋 world 🌍", "🤖", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣ #️⃣",
    "❤️", "☕", "🫠", "🫨 (Unicode 15)", "emoji at end 🎉", "🎉 emoji at start", "🔥🔥🔥🔥🔥",
    "a😀b", "😀 😀", "🧑🏿‍🤝‍🧑🏻", "✌🏼 ✊🏾", "©®™", "♠♣♥♦", "→←↑↓⇒", "∑∫∂√∞≠≤≥", "★☆✓✗",
]

CONTROL = [
    "\x00", "a\x00b", "\x01\x02\x03", "\x07bell", "back\x08space", "\x0b\x0c", "\x1b[31mred\x1b[0m",
    "\x1c\x1d\x1e\x1f", "\x7f", "del\x7fchar", "\u0080\u0081\u009f", "tab\tand\x0bvt", "\ufffd", "a\ufffdb",
    "\ue000 private use", "\U0010fffd", "\u2066isolate\u2069", "\u200d", "\u200e\u200f", "\u00ad soft hyphen",
]

SPECIAL_COMMON = [
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|>",
    "<|im_start|>",
    "<|im_start",
    "im_start|>",
    "<|endoftext|>",
    "text<|endoftext|>more",
    "<start_of_turn>user",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn><end_of_turn>",
    "<end_of_turn>",
    "<bos>", "<eos>", "<unk>", "<pad>", "<mask>",
    "<bos>Hello<eos>",
    "<s>", "</s>", "<s>text</s>",
    "<table><tr><td>1</td></tr></table>",
    "<start_of_image>",
    "[multimodal]",
    "<unused0><unused99>",
    "<repo_name>headshard<file_sep>main.cpp",
    "<|im_start|>user\n  spaced  <|im_end|>",
    " <|im_start|> ",
    "<|im_end|><|im_end|><|im_end|>",
    "<<|im_start|>>",
    "<end_of_turn>\n\n<start_of_turn>",
    "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>",
]

# Cases run with parse_special=False (user-defined tokens are still split out).
NO_SPECIAL = [
    "<|im_start|>user\nhi<|im_end|>",
    "<start_of_turn>user\nhi<end_of_turn>",
    "<bos><eos><unk>",
    "<table><tr><td>x</td></tr></table>",
    "a  b   c    d",
    "\t\t\tindent\n\n\n",
    "Hello world",
    "<|endoftext|>",
    "</s>",
    "<s>",
]

LONG = [
    ("The history of natural language processing generally started in the 1950s, although work can be "
     "found from earlier periods. In 1950, Alan Turing published an article titled \"Computing Machinery "
     "and Intelligence\" which proposed what is now called the Turing test as a criterion of intelligence. ") * 4,
    "lorem ipsum dolor sit amet " * 40,
    "0123456789" * 20,
    " " * 200,
    "\n" * 100,
    "a" * 300,
    "🤖" * 50,
    "中文" * 100,
    "Mixed: café 你好 🤖 123 \t\n" * 20,
    "def f():\n" + "    x = 1\n" * 50,
]


def random_cases(rng: random.Random, n: int) -> list:
    pools = [
        ["hello", "world", "The", "token", "izer", "ization", "ing", "ed", "un", "re", "xyz", "Q", "ZZ"],
        ["0", "1", "42", "2024", "99999", "3.14", "007"],
        [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n"],
        [".", ",", "!", "?", ";", ":", "'", "\"", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\", "-", "_",
         "=", "+", "*", "&", "^", "%", "$", "#", "@", "~", "`", "|"],
        ["'s", "'ll", "'T", "'RE", "'ve", "'m", "'D"],
        ["é", "ñ", "ü", "ß", "ø", "Ω", "π", "Я", "ж"],
        ["你", "好", "世界", "こ", "ん", "한", "글", "ب", "ع", "ש"],
        ["😀", "👍🏽", "👩‍💻", "🇯🇵", "❤️", "🎉", "\u200d", "\ufe0f"],
        ["\x00", "\x01", "\x1b", "\x7f", "\u00a0", "\u3000", "\u2028"],
        ["<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<|endoftext|>",
         "<table>", "</s>", "<b>", "[multimodal]"],
    ]
    weights = [30, 8, 12, 12, 4, 6, 6, 5, 3, 4]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 14)):
            pool = rng.choices(pools, weights)[0]
            parts.append(rng.choice(pool))
        out.append("".join(parts))
    return out


def all_strings() -> list:
    rng = random.Random(20240607)
    cases = []
    seen = set()

    def add(text, add_bos=True, parse_special=True):
        key = (text, add_bos, parse_special)
        if key not in seen:
            seen.add(key)
            cases.append({"text": text, "add_bos": add_bos, "parse_special": parse_special})

    add("")
    add("", add_bos=False)
    for group in (ENGLISH, CONTRACTIONS, CODE, NUMBERS, WHITESPACE, ACCENTS, SCRIPTS, EMOJI, CONTROL,
                  SPECIAL_COMMON, LONG):
        for s in group:
            add(s)
    for s in NO_SPECIAL:
        add(s, parse_special=False)
    # A few without BOS, to cover both settings.
    for s in ENGLISH[:10] + SPECIAL_COMMON[:5] + WHITESPACE[:5]:
        add(s, add_bos=False)
    for s in random_cases(rng, 80):
        add(s)
    return cases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="tests/golden")
    args = ap.parse_args()
    cases = all_strings()
    for name, file in MODELS.items():
        llm = Llama(model_path=os.path.join(args.models, file), vocab_only=True, verbose=False)
        results = []
        n_roundtrip = 0
        for c in cases:
            data = c["text"].encode("utf-8")
            ids = llm.tokenize(data, add_bos=c["add_bos"], special=c["parse_special"])
            plain = llm.tokenize(data, add_bos=False, special=c["parse_special"])
            roundtrip = llm.detokenize(plain, special=True) == data
            n_roundtrip += roundtrip
            results.append({**c, "ids": ids, "roundtrip": roundtrip})
        doc = {
            "model": file,
            "reference": "llama-cpp-python %s (llama.cpp %s): Llama(vocab_only=True).tokenize(text.encode(), "
                         "add_bos=add_bos, special=parse_special)" % (llama_cpp.__version__, LLAMA_CPP_COMMIT),
            "generator": "scripts/make-tokenizer-golden.py",
            "cases": results,
        }
        path = os.path.join(args.out, "tokenizer_%s.json" % name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print("%s: %d cases (%d round-trip) -> %s" % (name, len(results), n_roundtrip, path), file=sys.stderr)


if __name__ == "__main__":
    main()
