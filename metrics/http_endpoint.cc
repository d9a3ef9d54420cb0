#include "metrics/http_endpoint.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "httplib.h"
#include "prometheus/text_serializer.h"

namespace longlink::metrics {

HttpEndpoint::HttpEndpoint() = default;
HttpEndpoint::~HttpEndpoint() { Stop(); }

std::string HttpEndpoint::Render() const {
  std::vector<prometheus::MetricFamily> families;
  for (const Collector& c : collectors_) c(&families);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

absl::Status HttpEndpoint::Start(const std::string& bind, uint16_t port) {
  server_ = std::make_unique<httplib::Server>();
  server_->set_tcp_nodelay(true);  // headers and body go out as two writes; see gateway/admin/admin_server.cc
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    bool ready = !ready_ || ready_();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "not ready\n", "text/plain");
  });
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(bind);
  } else if (!server_->bind_to_port(bind, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot bind the metrics endpoint to ", bind, ":", port));
  }
  port_ = static_cast<uint16_t>(bound);
  listen_done_.store(false);
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_done_.store(true);
  });
  // httplib ignores stop() until its accept loop runs; wait for it so an early Stop() cannot hang.
  while (!server_->is_running() && !listen_done_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return absl::OkStatus();
}

void HttpEndpoint::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

prometheus::MetricFamily CounterFamily(std::string name, std::string help) {
  return prometheus::MetricFamily{std::move(name), std::move(help), prometheus::MetricType::Counter, {}};
}
prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  return prometheus::MetricFamily{std::move(name), std::move(help), prometheus::MetricType::Gauge, {}};
}
prometheus::MetricFamily HistogramFamily(std::string name, std::string help) {
  return prometheus::MetricFamily{std::move(name), std::move(help), prometheus::MetricType::Histogram, {}};
}

void AddSample(prometheus::MetricFamily* f, double value, std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  switch (f->type) {
    case prometheus::MetricType::Counter:
      m.counter.value = value;
      break;
    case prometheus::MetricType::Gauge:
      m.gauge.value = value;
      break;
    default:
      m.untyped.value = value;
      break;
  }
  f->metric.push_back(std::move(m));
}

void AddHistogram(prometheus::MetricFamily* f, const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                  double sum, std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    prometheus::ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum;
  f->metric.push_back(std::move(m));
}

}  // namespace longlink::metrics
