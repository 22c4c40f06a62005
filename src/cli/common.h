// Pieces shared by the headshard subcommands.
#pragma once
#include <string>

#include "cli/args.h"
#include "model/weights.h"

namespace hs::cli {

// The default model, as scripts/fetch-model.sh places it.
inline constexpr const char* kDefaultModelPath = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

// --model, else $HEADSHARD_MODEL, else the default model's path under models/.
std::string model_path(const Args& a);
// A progress bar on stderr while weights load; nothing when stderr is not a terminal.
LoadProgress terminal_progress();

}  // namespace hs::cli
