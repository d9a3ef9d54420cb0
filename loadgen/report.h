// The run's report: every figure the engine measured, flattened into named metrics (the names thresholds
// use), rendered as text for people and as JSON for tools, together with the scenario and machine facts.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "loadgen/engine.h"
#include "loadgen/scenario.h"
#include "prometheus/metric_family.h"

namespace longlink::loadgen {

struct ThresholdResult {
  std::string text;  // "e2e_p99_ms < 50"
  double observed = 0;
  bool measured = false;
  bool held = false;
};

struct Report {
  std::map<std::string, double> metrics;
  std::vector<ThresholdResult> thresholds;
  bool valid = true;  // false when the generator itself fell behind
  std::string invalid_reason;
  double elapsed_s = 0;
  LedgerTotals ledger;
  struct Latency {
    std::string name;
    uint64_t count = 0;
    double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;  // milliseconds
  };
  std::vector<Latency> latencies;
};

Report BuildReport(const Engine& engine, const Scenario& scenario);
std::string RenderText(const Report& report, const Scenario& scenario);
std::string RenderJson(const Report& report, const Scenario& scenario);
// The generator's own Prometheus families (longlink_loadgen_*), summed over shards at scrape time.
void CollectMetrics(const Engine& engine, std::vector<prometheus::MetricFamily>* out);
// The process exit code the report calls for (see ExitCode).
int ReportExitCode(const Report& report);

}  // namespace longlink::loadgen
