#include "cli/device.h"

#include <stdexcept>

#include <spdlog/spdlog.h>

#ifdef HEADSHARD_WITH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace hs::cli {

std::string resolve_device(const std::string& device) {
  if (device != "cpu" && device != "cuda" && device != "auto")
    throw std::invalid_argument("--device must be cpu, cuda or auto, got '" + device + "'");
  if (device == "cpu") return device;
#ifdef HEADSHARD_WITH_CUDA
  if (cuda_device_available()) return "cuda";
  if (device == "cuda") throw std::invalid_argument("--device cuda: no usable GPU was found; use --device cpu");
#else
  if (device == "cuda")
    throw std::invalid_argument(
        "--device cuda: this headshard was built without CUDA (configure with -DHEADSHARD_CUDA=on on a machine with "
        "the CUDA toolkit); use --device cpu");
#endif
  return "cpu";
}

std::unique_ptr<Backend> make_backend(const std::string& device, std::shared_ptr<const ModelWeights> weights) {
  const std::string d = resolve_device(device);
  spdlog::info("backend: {}{}", d, device == "auto" ? " (auto)" : "");
#ifdef HEADSHARD_WITH_CUDA
  if (d == "cuda") return make_cuda_backend(std::move(weights));
#endif
  return make_cpu_backend(std::move(weights));
}

}  // namespace hs::cli
