// ChatTemplate tests: renderings against the real Jinja templates (tests/golden/chat_templates.json,
// made by scripts/make-chat-template-golden.py), format detection from the GGUF models, and errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "model/chat_template.h"
#include "model/gguf.h"
#include "test_util.h"

namespace hs {
namespace {

using nlohmann::json;

json read_golden() {
  std::ifstream in(test::source_path("tests/golden/chat_templates.json"));
  EXPECT_TRUE(in.good());
  return json::parse(in);
}

std::vector<ChatMessage> messages_of(const json& j) {
  std::vector<ChatMessage> out;
  for (const json& m : j) out.push_back({m.at("role"), m.at("content")});
  return out;
}

TEST(ChatTemplateGolden, MatchesJinjaRendering) {
  const json golden = read_golden();
  const json& templates = golden.at("templates");
  int checked = 0, errors = 0;
  for (const json& c : golden.at("cases")) {
    const json& t = templates.at(c.at("template").get<std::string>());
    const ChatTemplate tmpl = ChatTemplate::detect(t.at("source"), t.at("architecture"), c.at("bos_token"));
    const std::vector<ChatMessage> messages = messages_of(c.at("messages"));
    const bool agp = c.at("add_generation_prompt");
    const std::string where = c.at("template").get<std::string>() + " bos='" + c.at("bos_token").get<std::string>() +
                              "' agp=" + std::to_string(agp) + " messages=" + c.at("messages").dump();
    if (c.at("error").get<bool>()) {
      ++errors;
      EXPECT_THROW(tmpl.apply(messages, agp), ChatTemplateError) << where;
    } else {
      EXPECT_EQ(tmpl.apply(messages, agp), c.at("expected").get<std::string>()) << where;
    }
    ++checked;
  }
  EXPECT_GE(checked, 200);
  EXPECT_GT(errors, 0);
}

TEST(ChatTemplateDetect, FormatsFromTemplates) {
  const json templates = read_golden().at("templates");
  auto detect = [&](const char* name) {
    const json& t = templates.at(name);
    return ChatTemplate::detect(t.at("source"), t.at("architecture"));
  };
  EXPECT_EQ(detect("smollm2").format(), ChatFormat::ChatML);
  EXPECT_EQ(detect("smollm2").default_system(), "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(detect("chatml").format(), ChatFormat::ChatML);
  EXPECT_EQ(detect("chatml").default_system(), "");
  EXPECT_EQ(detect("gemma3").format(), ChatFormat::Gemma);
  EXPECT_EQ(detect("llama3").format(), ChatFormat::Llama3);
}

TEST(ChatTemplateDetect, FromGgufModels) {
  {
    HS_MODEL_OR_SKIP(path, test::kSmolLM2File);
    const ChatTemplate t = ChatTemplate::from_gguf(*GgufFile::open(path));
    EXPECT_EQ(t.format(), ChatFormat::ChatML);
    EXPECT_EQ(t.apply({{"user", "hi"}}, true),
              "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
              "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  }
  {
    HS_MODEL_OR_SKIP(path, test::kGemma3File);
    // No template in the file: the gemma3 architecture decides; no BOS text (the tokenizer adds BOS).
    const ChatTemplate t = ChatTemplate::from_gguf(*GgufFile::open(path));
    EXPECT_EQ(t.format(), ChatFormat::Gemma);
    EXPECT_EQ(t.apply({{"system", "Be kind."}, {"user", " hi "}}, true),
              "<start_of_turn>user\nBe kind.\n\nhi<end_of_turn>\n<start_of_turn>model\n");
  }
}

TEST(ChatTemplateDetect, ArchitectureFallbackAndUnknown) {
  EXPECT_EQ(ChatTemplate::detect("", "gemma3").format(), ChatFormat::Gemma);
  EXPECT_EQ(ChatTemplate::detect("", "qwen2").format(), ChatFormat::ChatML);
  EXPECT_THROW(ChatTemplate::detect("", "llama"), ChatTemplateError);
  try {
    ChatTemplate::detect("{{ messages | tojson }}", "mystery");
    FAIL() << "expected ChatTemplateError";
  } catch (const ChatTemplateError& e) {
    EXPECT_NE(std::string(e.what()).find("not recognised"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mystery"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplateErrors, UnknownRoleNamesTheRole) {
  for (ChatFormat f : {ChatFormat::ChatML, ChatFormat::Gemma, ChatFormat::Llama3}) {
    const ChatTemplate t(f);
    try {
      t.apply({{"user", "hi"}, {"narrator", "..."}}, true);
      FAIL() << "expected ChatTemplateError for " << chat_format_name(f);
    } catch (const ChatTemplateError& e) {
      EXPECT_NE(std::string(e.what()).find("'narrator'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("message 1"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(ChatTemplate(ChatFormat::Gemma).apply({{"user", "q"}, {"tool", "r"}}, true), ChatTemplateError);
  EXPECT_NO_THROW(ChatTemplate(ChatFormat::ChatML).apply({{"user", "q"}, {"tool", "r"}}, true));
}

TEST(ChatTemplateHelpers, DefaultSystemExtraction) {
  // Qwen2.5-style: a default inside one literal, next to a concatenation that is not a default.
  const std::string qwen =
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
      "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
      "{%- endif %}";
  EXPECT_EQ(chatml_default_system(qwen), "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(chatml_default_system("{{ \"<|im_start|>system\\nIt\\'s \\\"quoted\\\"<|im_end|>\" }}"), "It's \"quoted\"");
  EXPECT_EQ(chatml_default_system("{{'<|im_start|>' + message['role'] + '\\n'}}"), "");
}

TEST(ChatTemplateHelpers, JinjaTrimIsPythonStrip) {
  EXPECT_EQ(jinja_trim("  a b \n"), "a b");
  EXPECT_EQ(jinja_trim("\x1c\xC2\xA0x\xE3\x80\x80"), "x");  // U+001C, NBSP, ideographic space
  EXPECT_EQ(jinja_trim("\xE2\x80\x8Bx"), "\xE2\x80\x8Bx");   // zero-width space is not whitespace
  EXPECT_EQ(jinja_trim(" \t\n"), "");
  EXPECT_EQ(jinja_trim(""), "");
}

}  // namespace
}  // namespace hs
