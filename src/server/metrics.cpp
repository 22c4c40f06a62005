#include "server/metrics.h"

#include <cmath>
#include <cstdio>

namespace hs::server {

std::string escape_label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.12g", v);
  return buf;
}

namespace {

std::string label_text(const Labels& labels) {
  if (labels.empty()) return "";
  std::string s = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) s += ",";
    s += labels[i].first + "=\"" + escape_label_value(labels[i].second) + "\"";
  }
  return s + "}";
}

}  // namespace

void PrometheusText::family(const std::string& name, const std::string& type, const std::string& help) {
  out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void PrometheusText::sample(const std::string& name, double value, const Labels& labels) {
  out_ += name + label_text(labels) + " " + format_metric_value(value) + "\n";
}

void PrometheusText::counter(const std::string& name, const std::string& help, double value, const Labels& labels) {
  family(name, "counter", help);
  sample(name, value, labels);
}

void PrometheusText::gauge(const std::string& name, const std::string& help, double value, const Labels& labels) {
  family(name, "gauge", help);
  sample(name, value, labels);
}

void PrometheusText::histogram(const std::string& name, const std::string& help, const Histogram& h) {
  family(name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    cumulative += h.counts()[i];
    sample(name + "_bucket", static_cast<double>(cumulative), {{"le", format_metric_value(h.bounds()[i])}});
  }
  sample(name + "_bucket", static_cast<double>(h.count()), {{"le", "+Inf"}});
  sample(name + "_sum", h.sum());
  sample(name + "_count", static_cast<double>(h.count()));
}

std::string render_metrics(const ServiceStats& s, const HttpCounters& http, const std::string& model_id) {
  PrometheusText t;
  t.gauge("headshard_model_info", "The model this server serves.", 1, {{"model", model_id}});

  t.family("headshard_server_state", "gauge", "1 for the server's current state, 0 for the others.");
  for (ServiceState st : {ServiceState::Loading, ServiceState::Ready, ServiceState::Draining, ServiceState::Stopped,
                          ServiceState::Failed})
    t.sample("headshard_server_state", s.state == st ? 1 : 0, {{"state", service_state_name(st)}});

  t.counter("headshard_requests_submitted_total", "Sequences accepted into the queue (one per choice).",
            static_cast<double>(s.requests_submitted));
  t.family("headshard_requests_finished_total", "counter",
           "Sequences ended, by outcome: stop, length, cancelled, timeout, rejected, error, shutdown.");
  // The usual outcomes always appear (as 0 until they happen); rarer ones once they have.
  std::map<std::string, int64_t> finished = {{"stop", 0}, {"length", 0}, {"cancelled", 0}, {"timeout", 0}};
  for (const auto& [outcome, n] : s.requests_finished) finished[outcome] = n;
  for (const auto& [outcome, n] : finished)
    t.sample("headshard_requests_finished_total", static_cast<double>(n), {{"outcome", outcome}});
  t.family("headshard_requests_rejected_total", "counter",
           "Requests refused before queueing, by reason: queue_full (429), unavailable (503).");
  for (const char* r : {"queue_full", "unavailable"}) {
    auto it = s.requests_rejected.find(r);
    t.sample("headshard_requests_rejected_total", it == s.requests_rejected.end() ? 0 : static_cast<double>(it->second),
             {{"reason", r}});
  }

  t.counter("headshard_prompt_tokens_total", "Prompt tokens of sequences admitted into the engine.",
            static_cast<double>(s.prompt_tokens));
  t.counter("headshard_generation_tokens_total", "Tokens generated.", static_cast<double>(s.generation_tokens));
  t.counter("headshard_engine_steps_total", "Engine batch steps run.", static_cast<double>(s.engine_steps));
  t.gauge("headshard_requests_running", "Sequences in the engine.", s.running);
  t.gauge("headshard_requests_waiting", "Sequences queued, waiting to enter the engine.", s.waiting);
  t.counter("headshard_preemptions_total", "Sequences preempted (KV freed, recomputed later) for lack of KV pages.",
            static_cast<double>(s.engine.preemptions));

  if (s.engine.kv_known) {
    const KvStats& kv = s.engine.kv;
    const double pb = static_cast<double>(kv.page_bytes);
    t.gauge("headshard_kv_pages_total", "Pages in the KV pool.", static_cast<double>(kv.pages_total));
    t.gauge("headshard_kv_pages_used", "KV pages in use.", static_cast<double>(kv.pages_used));
    t.gauge("headshard_kv_pages_free", "KV pages free.", static_cast<double>(kv.pages_total - kv.pages_used));
    t.gauge("headshard_kv_page_bytes", "Bytes of one KV page.", pb);
    t.gauge("headshard_kv_capacity_bytes", "Bytes of the KV pool.", static_cast<double>(kv.pages_total) * pb);
    t.gauge("headshard_kv_used_bytes", "Bytes of KV pages in use.", static_cast<double>(kv.pages_used) * pb);
    t.family("headshard_kv_pages_used_by_kind", "gauge", "KV pages in use, by the kind of head holding them.");
    const std::pair<const char*, int64_t> kinds[] = {
        {"dense", kv.pages_dense}, {"strided", kv.pages_strided}, {"streaming", kv.pages_streaming}};
    for (const auto& [kind, n] : kinds)
      t.sample("headshard_kv_pages_used_by_kind", static_cast<double>(n), {{"kind", kind}});
    t.family("headshard_kv_used_bytes_by_kind", "gauge", "Bytes of KV pages in use, by the kind of head holding them.");
    for (const auto& [kind, n] : kinds)
      t.sample("headshard_kv_used_bytes_by_kind", static_cast<double>(n) * pb, {{"kind", kind}});
  }

  t.histogram("headshard_time_to_first_token_seconds", "Seconds from submission to the first token.",
              s.time_to_first_token);
  t.histogram("headshard_inter_token_latency_seconds", "Seconds between consecutive tokens of a sequence.",
              s.inter_token_latency);
  t.histogram("headshard_e2e_request_latency_seconds",
              "Seconds from submission to the end of sequences that finished (stop or length).", s.e2e_latency);
  t.histogram("headshard_request_queue_time_seconds", "Seconds sequences waited before entering the engine.",
              s.queue_time);

  t.family("headshard_http_responses_total", "counter", "HTTP responses sent, by status code.");
  for (const auto& [code, n] : http.responses_by_status)
    t.sample("headshard_http_responses_total", static_cast<double>(n), {{"code", std::to_string(code)}});
  t.gauge("headshard_http_requests_in_flight", "Generation requests being served.", static_cast<double>(http.in_flight));
  t.gauge("headshard_http_threads", "HTTP threads; each open connection holds one.", static_cast<double>(http.threads));
  t.gauge("headshard_http_threads_busy", "HTTP threads holding a connection.", static_cast<double>(http.threads_busy));
  t.gauge("headshard_http_connections_queued", "Accepted connections waiting for an HTTP thread.",
          static_cast<double>(http.connections_queued));
  return t.str();
}

}  // namespace hs::server
