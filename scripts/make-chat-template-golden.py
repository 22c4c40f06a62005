#!/usr/bin/env python3
"""Writes tests/golden/chat_templates.json: conversations rendered by the real Jinja chat
templates, as transformers' apply_chat_template renders them (jinja2 ImmutableSandboxedEnvironment
with trim_blocks and lstrip_blocks, raise_exception available), for the C++ ChatTemplate to match.

Templates: SmolLM2's (read from its GGUF), Gemma 3's official template (the GGUF has none),
Meta-Llama-3-Instruct's, and the plain ChatML template transformers used as its default.

    python3 scripts/make-chat-template-golden.py [--models DIR]

Needs the `gguf` and `jinja2` packages.
"""
import argparse
import json
import os

import gguf
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n"
)

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def conversations():
    S = lambda c: {"role": "system", "content": c}  # noqa: E731
    U = lambda c: {"role": "user", "content": c}  # noqa: E731
    A = lambda c: {"role": "assistant", "content": c}  # noqa: E731
    return [
        [U("hi")],
        [U("Hello, how are you?")],
        [S("You are a pirate."), U("Where is the treasure?")],
        [S("Be brief."), U("What is 2+2?"), A("4"), U("And 3+3?")],
        [U("one"), A("two"), U("three"), A("four")],
        [U("  padded content \n\n"), A("\n\tanswer with whitespace  ")],
        [S("  system with spaces  "), U("  user with spaces  ")],
        [U("emoji 🤖 and 你好 and café")],
        [U("literal <|im_start|> and <start_of_turn> and <|eot_id|> inside")],
        [U("")],
        [U("   \n\t ")],
        [U("def f():\n    return 1\n")],
        [U("\x1cfile separator and nbsp\u00a0")],
        [],
        [S("only a system message")],
        [A("assistant first")],
        [U("a"), U("b")],
        [U("q"), S("system in the middle")],
        [S("sys"), A("assistant right after system")],
        [U("use the tool"), {"role": "tool", "content": "{\"result\": 42}"}],
    ]


def render(env, source, messages, add_generation_prompt, bos_token):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    tmpl = env.from_string(source)
    return tmpl.render(messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos_token,
                       eos_token="", raise_exception=raise_exception)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="tests/golden/chat_templates.json")
    args = ap.parse_args()

    reader = gguf.GGUFReader(os.path.join(args.models, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    field = reader.fields["tokenizer.chat_template"]
    smollm2_template = bytes(field.parts[field.data[0]]).decode("utf-8")

    templates = {
        "smollm2": {"source": smollm2_template, "architecture": "llama", "bos_tokens": [""]},
        "gemma3": {"source": GEMMA3_TEMPLATE, "architecture": "gemma3", "bos_tokens": ["", "<bos>"]},
        "llama3": {"source": LLAMA3_TEMPLATE, "architecture": "llama", "bos_tokens": ["", "<|begin_of_text|>"]},
        "chatml": {"source": CHATML_TEMPLATE, "architecture": "qwen2", "bos_tokens": [""]},
    }
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    cases = []
    for name, t in templates.items():
        for bos in t["bos_tokens"]:
            for messages in conversations():
                if name == "gemma3" and any(m["role"] == "tool" for m in messages):
                    continue  # headshard's Gemma format has no tool role (tested separately)
                for agp in (True, False):
                    case = {"template": name, "bos_token": bos, "messages": messages, "add_generation_prompt": agp}
                    try:
                        case["expected"] = render(env, t["source"], messages, agp, bos)
                        case["error"] = False
                    except jinja2.exceptions.TemplateError as e:  # includes UndefinedError
                        case["expected"] = None
                        case["error"] = True
                        case["reference_error"] = str(e)
                    cases.append(case)
    doc = {
        "reference": "jinja2 %s ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), "
                     "as transformers' apply_chat_template renders" % jinja2.__version__,
        "generator": "scripts/make-chat-template-golden.py",
        "templates": {k: {"source": v["source"], "architecture": v["architecture"]} for k, v in templates.items()},
        "cases": cases,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("%d cases (%d errors) -> %s" % (len(cases), sum(c["error"] for c in cases), args.out))


if __name__ == "__main__":
    main()
