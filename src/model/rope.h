// Rotary position embedding frequencies, with the scaling variants found in model metadata.
#pragma once
#include <vector>

#include "model/config.h"

namespace hs {

struct RopeTable {
  std::vector<float> inv_freq;  // angle per position for each rotated pair (rope_dims / 2)
  float mscale = 1.0f;          // multiplies cos and sin (YaRN's attention factor)
};

// `base` is the layer's frequency base; `freq_factors` (from a GGUF rope_freqs tensor, may be
// empty) divide the frequencies; `scaled` applies config.rope_scaling (Gemma 3 applies it to
// its global layers only).
RopeTable make_rope_table(const ModelConfig& config, float base, const std::vector<float>& freq_factors,
                          bool scaled);

}  // namespace hs
