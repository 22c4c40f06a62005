#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace hs::cli {

std::string model_path(const Args& a) {
  if (a.has("model")) return a.str("model");
  if (const char* env = std::getenv("HEADSHARD_MODEL")) return env;
  return kDefaultModelPath;
}

LoadProgress terminal_progress() {
  if (!isatty(STDERR_FILENO)) return {};
  return [](int done, int total) {
    const int width = 30, filled = total ? done * width / total : width;
    std::fprintf(stderr, "\rloading weights [%s%s] %d/%d", std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), done, total);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

}  // namespace hs::cli
