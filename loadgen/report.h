// The run's report: every figure the engine measured, flattened into named metrics (the names thresholds
// use), rendered as text for people and as JSON for tools, together with the scenario and machine facts.
#pragma once

#include <map>
#include <string>
#include <utility>
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
  // ledger.lost_sample in the server's terms: who sent which SEND (its client_msg_id on the wire) to whom.
  struct Lost {
    uint64_t sender_user = 0;
    uint32_t sender_device = 0;
    uint32_t seq = 0;  // the sender's message number in this run
    uint64_t client_msg_id = 0;
    uint64_t recipient_user = 0;
    uint32_t recipient_device = 0;
  };
  std::vector<Lost> lost;
  struct Latency {
    std::string name;
    uint64_t count = 0;
    double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;  // milliseconds
    // The percentile spectrum for the HTML report's distribution chart: (percentile, milliseconds) at
    // percentiles 0, 50, 75, 87.5, ... (each step halving what is left) up to the maximum.
    std::vector<std::pair<double, double>> spectrum;
  };
  std::vector<Latency> latencies;
  // The run second by second (merged to coarser steps on long runs).
  std::vector<TimelinePoint> timeline;
  uint32_t timeline_spacing_s = 1;
};

Report BuildReport(const Engine& engine, const Scenario& scenario);
std::string RenderText(const Report& report, const Scenario& scenario);
std::string RenderJson(const Report& report, const Scenario& scenario);
// One self-contained HTML page (inline SVG charts, no scripts or fetches): report_html.cc.
std::string RenderHtml(const Report& report, const Scenario& scenario);
// "Linux 6.1 x86_64, 2 cores, 23.5 GiB"
std::string MachineDescription();
// What names one run in the generator's metrics: every longlink_loadgen_* series carries run_id (one value
// per process, so the label stays bounded), and longlink_loadgen_run_info adds the scenario.
struct RunLabels {
  std::string run_id;    // "<scenario>-<UTC start, 20261206T235900Z>" unless output.run_id sets it
  std::string scenario;  // the scenario's name, "flags" without one
};
// The generator's own Prometheus families (longlink_loadgen_*, plus process_*), summed over shards at scrape
// time; safe on the endpoint's thread while the run goes on.
void CollectMetrics(const Engine& engine, const Scenario& scenario, const RunLabels& run,
                    std::vector<prometheus::MetricFamily>* out);
// The process exit code the report calls for (see ExitCode).
int ReportExitCode(const Report& report);

}  // namespace longlink::loadgen
