// Choosing the backend a command runs on: --device cpu|cuda|auto.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/weights.h"

namespace hs::cli {

// "cpu", "cuda" or "auto" -> "cpu" or "cuda"; auto is cuda when this build has the CUDA backend
// and a GPU is present, else cpu. Throws std::invalid_argument for another name, and for "cuda"
// when this build has no CUDA backend or no GPU is found (saying what to do instead).
std::string resolve_device(const std::string& device);

// The backend for resolve_device(device) over the weights (uploaded to GPU 0 for cuda).
std::unique_ptr<Backend> make_backend(const std::string& device, std::shared_ptr<const ModelWeights> weights);

}  // namespace hs::cli
