// The metrics HTTP endpoint: /metrics in the Prometheus text format (families produced by collectors at
// scrape time and serialized by prometheus-cpp), plus /healthz and /readyz. It runs on its own threads,
// off the shards; collectors only read shard-owned cells.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "prometheus/metric_family.h"

namespace httplib {
class Server;
}

namespace longlink::metrics {

using Collector = std::function<void(std::vector<prometheus::MetricFamily>* out)>;

class HttpEndpoint {
 public:
  HttpEndpoint();
  ~HttpEndpoint();

  void AddCollector(Collector c) { collectors_.push_back(std::move(c)); }
  // /readyz answers 200 while ready() is true, 503 otherwise. /healthz answers 200 while the process runs.
  void SetReadiness(std::function<bool()> ready) { ready_ = std::move(ready); }

  // Binds (port 0 picks one) and starts serving on a background thread.
  absl::Status Start(const std::string& bind, uint16_t port);
  uint16_t port() const { return port_; }
  void Stop();

  // Renders the current metrics (what GET /metrics returns).
  std::string Render() const;

 private:
  std::vector<Collector> collectors_;
  std::function<bool()> ready_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_done_{false};
  uint16_t port_ = 0;
};

// Helpers for collectors.
prometheus::MetricFamily CounterFamily(std::string name, std::string help);
prometheus::MetricFamily GaugeFamily(std::string name, std::string help);
prometheus::MetricFamily HistogramFamily(std::string name, std::string help);
void AddSample(prometheus::MetricFamily* f, double value, std::vector<prometheus::ClientMetric::Label> labels = {});
void AddHistogram(prometheus::MetricFamily* f, const std::vector<double>& bounds,
                  const std::vector<uint64_t>& counts, double sum,
                  std::vector<prometheus::ClientMetric::Label> labels = {});

}  // namespace longlink::metrics
