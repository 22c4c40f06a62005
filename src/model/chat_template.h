// Chat templates: a conversation rendered as the prompt text the model was trained on.
//
// This is not a Jinja interpreter. The format is recognised from the Jinja source in the model
// (tokenizer.chat_template) and rendered by hand to exactly the string that template renders
// (transformers' apply_chat_template), for these formats:
//   ChatML  <|im_start|>role\ncontent<|im_end|>\n ...; a default system turn that the template
//           inserts when the conversation does not start with one (SmolLM2 does) is found in the
//           source and reproduced.
//   Gemma   [bos]<start_of_turn>user\n[system\n\n]content<end_of_turn>\n ... with "assistant"
//           rendered as "model", contents trimmed, the system message folded into the first
//           user turn, and roles required to alternate user/assistant (Gemma 3's template).
//   Llama3  [bos]<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> ..., contents
//           trimmed (Meta-Llama-3-Instruct's template).
// Without a template the architecture decides (gemma* -> Gemma, qwen* -> ChatML).
// The BOS text is rendered only when given: with a tokenizer that adds BOS itself (add_bos) it
// must stay empty, which is what from_gguf does.
// Every problem (unknown role, roles out of order, an unrecognised template) throws
// ChatTemplateError with a message saying what is wrong.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

namespace hs {

class GgufFile;

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (ChatML and Llama3 also accept "tool")
  std::string content;
};

class ChatTemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ChatFormat { ChatML, Gemma, Llama3 };
const char* chat_format_name(ChatFormat f);

class ChatTemplate {
 public:
  explicit ChatTemplate(ChatFormat format, std::string default_system = "", std::string bos_token = "");

  // Recognises the format of a Jinja chat template; when `source` is empty or not recognised,
  // falls back on the architecture (general.architecture). Throws ChatTemplateError when
  // neither tells.
  static ChatTemplate detect(const std::string& source, const std::string& architecture = "",
                             std::string bos_token = "");
  // tokenizer.chat_template and general.architecture of a GGUF; no BOS text (the tokenizer adds it).
  static ChatTemplate from_gguf(const GgufFile& gguf);

  ChatFormat format() const { return format_; }
  const std::string& default_system() const { return default_system_; }
  const std::string& bos_token() const { return bos_token_; }

  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

 private:
  std::string apply_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string apply_gemma(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string apply_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  ChatFormat format_;
  std::string default_system_;  // ChatML only
  std::string bos_token_;
};

// The default system prompt a ChatML template inserts ('<|im_start|>system\n...<|im_end|>' as one
// string literal), or "" when it has none.
std::string chatml_default_system(const std::string& source);
// Jinja's trim filter (Python str.strip()): removes leading and trailing whitespace.
std::string jinja_trim(const std::string& s);

}  // namespace hs
