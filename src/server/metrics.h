// Prometheus text exposition (format 0.0.4) of the service's counters, gauges and histograms,
// and the server's own HTTP counters. Metric names start with headshard_; see render_metrics
// for the list. Histograms come as <name>_bucket{le="..."} (cumulative, ending with +Inf),
// <name>_sum and <name>_count.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/service_stats.h"

namespace hs::server {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Builds the text: one HELP and TYPE header per family, then its samples.
class PrometheusText {
 public:
  // type: "counter", "gauge" or "histogram".
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, double value, const Labels& labels = {});
  void counter(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  void gauge(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  void histogram(const std::string& name, const std::string& help, const Histogram& h);
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

// Label values escaped as the format wants (backslash, double quote, newline).
std::string escape_label_value(const std::string& v);
// Numbers as Prometheus reads them: integers without a fraction, +Inf, -Inf, NaN.
std::string format_metric_value(double v);

struct HttpCounters {
  std::map<int, int64_t> responses_by_status;  // HTTP status -> responses sent
  int64_t in_flight = 0;                        // generation requests being served
  int64_t threads = 0;                          // HTTP threads (server/connection_threads.h)
  int64_t threads_busy = 0;                     // ... holding a connection
  int64_t connections_queued = 0;               // connections waiting for a thread
};

std::string render_metrics(const ServiceStats& stats, const HttpCounters& http, const std::string& model_id);

}  // namespace hs::server
