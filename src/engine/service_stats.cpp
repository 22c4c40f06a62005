#include "engine/service_stats.h"

#include <algorithm>
#include <stdexcept>

namespace hs {

const char* service_state_name(ServiceState s) {
  switch (s) {
    case ServiceState::Loading: return "loading";
    case ServiceState::Ready: return "ready";
    case ServiceState::Draining: return "draining";
    case ServiceState::Stopped: return "stopped";
    case ServiceState::Failed: return "failed";
  }
  return "unknown";
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()))
    throw std::invalid_argument("histogram bounds must be ascending");
}

void Histogram::observe(double value) {
  // Prometheus buckets are "less than or equal": the first bound >= value.
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

double Histogram::quantile(double q) const {
  if (count_ == 0) return 0.0;
  const double target = q * static_cast<double>(count_);
  double seen = 0.0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    const double next = seen + static_cast<double>(counts_[i]);
    if (next >= target && counts_[i] > 0) {
      if (i == bounds_.size()) return bounds_.empty() ? 0.0 : bounds_.back();
      const double lo = i == 0 ? 0.0 : bounds_[i - 1], hi = bounds_[i];
      return lo + (hi - lo) * (target - seen) / static_cast<double>(counts_[i]);
    }
    seen = next;
  }
  return bounds_.empty() ? 0.0 : bounds_.back();
}

std::vector<double> Histogram::latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
          1.0,   1.5,    2.0,   2.5,  5.0,   7.5,  10.0,  15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0};
}

}  // namespace hs
