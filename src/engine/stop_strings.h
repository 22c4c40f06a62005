// Stop strings over streamed text: text is released only once it cannot be the start of a stop
// string, so a client never sees part of one.
#pragma once
#include <string>
#include <vector>

namespace hs {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);

  // Adds generated text; returns the text that is now safe to emit. After a stop string is
  // found, returns the text before it and matched() turns true; later calls return "".
  std::string push(const std::string& text);
  // At the end of generation: whatever was held back.
  std::string flush();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
};

}  // namespace hs
