#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace hs {

RopeTable make_rope_table(const ModelConfig& c, float base, const std::vector<float>& freq_factors, bool scaled) {
  const int half = c.rope_dims / 2;
  RopeTable t;
  t.inv_freq.resize(half);
  for (int i = 0; i < half; ++i) {
    // Computed in float32 as the reference implementations do.
    t.inv_freq[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(c.rope_dims));
    if (i < static_cast<int>(freq_factors.size())) t.inv_freq[i] /= freq_factors[i];
  }
  const RopeScaling& rs = c.rope_scaling;
  if (!scaled || rs.type == RopeScalingType::None || rs.factor == 1.0f) return t;
  const float pi = 3.14159265358979f;
  switch (rs.type) {
    case RopeScalingType::Linear:
      for (float& f : t.inv_freq) f /= rs.factor;
      break;
    case RopeScalingType::Llama3: {
      if (!freq_factors.empty()) break;  // the GGUF's rope_freqs already hold these factors
      const float orig = static_cast<float>(rs.original_context);
      const float low_wavelen = orig / rs.low_freq_factor, high_wavelen = orig / rs.high_freq_factor;
      for (float& f : t.inv_freq) {
        const float wavelen = 2 * pi / f;
        if (wavelen > low_wavelen) {
          f /= rs.factor;
        } else if (wavelen >= high_wavelen) {
          const float smooth = (orig / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
          f = (1 - smooth) * f / rs.factor + smooth * f;
        }
      }
      break;
    }
    case RopeScalingType::Yarn: {
      // Dimensions rotating fast keep their frequency (extrapolate), slow ones are divided by
      // the factor (interpolate), with a linear ramp between (as in llama.cpp's rope_yarn).
      const float freq_scale = 1.0f / rs.factor;
      auto corr_dim = [&](float n_rot) {
        return c.rope_dims * std::log(rs.original_context / (n_rot * 2 * pi)) / (2 * std::log(base));
      };
      const float lo = std::max(0.0f, std::floor(corr_dim(rs.yarn_beta_fast)));
      const float hi = std::min(static_cast<float>(c.rope_dims - 1), std::ceil(corr_dim(rs.yarn_beta_slow)));
      for (int i = 0; i < half; ++i) {
        const float y = (static_cast<float>(i) - lo) / std::max(0.001f, hi - lo);
        const float ramp = (1 - std::min(1.0f, std::max(0.0f, y))) * rs.yarn_ext_factor;
        t.inv_freq[i] *= freq_scale * (1 - ramp) + ramp;
      }
      t.mscale = rs.yarn_attn_factor * (1.0f + 0.1f * std::log(rs.factor));
      break;
    }
    default:
      break;
  }
  return t;
}

}  // namespace hs
