// nats-server's own monitoring, re-exported on the gateway's /metrics: at each scrape the gateway reads
// /varz and /jsz of every --nats-monitor-urls endpoint (Debian has no prometheus-nats-exporter) and exports
// longlink_nats_server_*{server="host:port"} gauges and counters. One gateway configured with the URLs is
// enough; several give the same series under their own instance label.
#pragma once

#include <string>
#include <vector>

#include "prometheus/metric_family.h"

namespace longlink::gateway::nats {

class ServerMonitor {
 public:
  explicit ServerMonitor(std::vector<std::string> urls) : urls_(std::move(urls)) {}
  // Blocks for up to one second per unreachable server.
  void Collect(std::vector<prometheus::MetricFamily>* out);

 private:
  std::vector<std::string> urls_;
};

}  // namespace longlink::gateway::nats
