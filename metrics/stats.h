// Declarative statistics: a component declares its per-shard metrics once, as X-macro lists, and every
// exporter (the Prometheus collector, the admin API's /v1/stats) walks them with a StatsVisitor.
//
//   #define MY_COUNTERS(C) C(sends_total, "SENDs accepted")
//   #define MY_GAUGES(G)   G(users, "Users with an inbox")
//   #define MY_HISTOGRAMS(H) H(fsync_seconds, "Duration of one fdatasync")
//   struct MyStats {
//     LL_STATS_FIELDS(MY_COUNTERS, MY_GAUGES, MY_HISTOGRAMS)
//     void Visit(metrics::StatsVisitor& v) const { LL_STATS_VISIT(MY_COUNTERS, MY_GAUGES, MY_HISTOGRAMS) }
//   };
//
// Histograms declared this way measure seconds (metrics::LatencyBuckets()). Counters and gauges are summed
// over shards, histograms merged, unless the visitor is told a per-shard
// series is wanted (PerShard). Labelled families (closes by reason, frames by opcode) visit an array of
// cells with a function that names each cell's labels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metrics/metrics.h"

namespace longlink::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;
// Names the labels of cell i of a labelled family; returns false to leave the cell out (an unused slot).
using LabelFn = std::function<bool(size_t i, Labels* labels)>;

class StatsVisitor {
 public:
  virtual ~StatsVisitor() = default;
  virtual void Counter(std::string_view name, std::string_view help, const metrics::Counter& c) = 0;
  virtual void Gauge(std::string_view name, std::string_view help, const metrics::Gauge& g) = 0;
  virtual void Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h) = 0;
  // A family of cells told apart by labels.
  virtual void Counters(std::string_view name, std::string_view help, const metrics::Counter* cells, size_t n,
                        const LabelFn& labels) = 0;
  // Gauges exported per shard (label "shard"), and optionally split further by labels.
  virtual void ShardGauge(std::string_view name, std::string_view help, const metrics::Gauge& g) = 0;
  virtual void ShardGauges(std::string_view name, std::string_view help, const metrics::Gauge* cells, size_t n,
                           const LabelFn& labels) = 0;
};

}  // namespace longlink::metrics

#define LL_STATS_COUNTER_FIELD_(name, help) ::longlink::metrics::Counter name;
#define LL_STATS_GAUGE_FIELD_(name, help) ::longlink::metrics::Gauge name;
#define LL_STATS_HISTOGRAM_FIELD_(name, help) ::longlink::metrics::Histogram name;
#define LL_STATS_COUNTER_VISIT_(name, help) v.Counter(#name, help, name);
#define LL_STATS_GAUGE_VISIT_(name, help) v.Gauge(#name, help, name);
#define LL_STATS_HISTOGRAM_VISIT_(name, help) v.Histogram(#name, help, name);

// Member declarations for the three lists (pass LL_STATS_NONE for an empty one).
#define LL_STATS_FIELDS(COUNTERS, GAUGES, HISTOGRAMS) \
  COUNTERS(LL_STATS_COUNTER_FIELD_)                   \
  GAUGES(LL_STATS_GAUGE_FIELD_)                       \
  HISTOGRAMS(LL_STATS_HISTOGRAM_FIELD_)
// The body of Visit(metrics::StatsVisitor& v).
#define LL_STATS_VISIT(COUNTERS, GAUGES, HISTOGRAMS) \
  COUNTERS(LL_STATS_COUNTER_VISIT_)                  \
  GAUGES(LL_STATS_GAUGE_VISIT_)                      \
  HISTOGRAMS(LL_STATS_HISTOGRAM_VISIT_)
#define LL_STATS_NONE(X)

namespace prometheus {
struct MetricFamily;
}

namespace longlink::metrics {

// Sums shards' statistics into Prometheus families named prefix + name, in the order first visited.
// Visit every shard's stats, each after BeginShard(its id).
class PrometheusStats final : public StatsVisitor {
 public:
  explicit PrometheusStats(std::string prefix);
  ~PrometheusStats() override;
  void BeginShard(uint32_t shard) { shard_ = std::to_string(shard); }
  void AppendTo(std::vector<prometheus::MetricFamily>* out);

  void Counter(std::string_view name, std::string_view help, const metrics::Counter& c) override;
  void Gauge(std::string_view name, std::string_view help, const metrics::Gauge& g) override;
  void Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h) override;
  void Counters(std::string_view name, std::string_view help, const metrics::Counter* cells, size_t n,
                const LabelFn& labels) override;
  void ShardGauge(std::string_view name, std::string_view help, const metrics::Gauge& g) override;
  void ShardGauges(std::string_view name, std::string_view help, const metrics::Gauge* cells, size_t n,
                   const LabelFn& labels) override;

 private:
  struct Family;
  Family& Get(std::string_view name, std::string_view help, int type);
  void Add(Family& f, const Labels& labels, double v);

  std::string prefix_;
  std::string shard_;
  std::vector<std::unique_ptr<Family>> families_;
};

// One shard's statistics as flat name -> value pairs (the admin API's /v1/stats): counters without their
// "_total" suffix, gauges, and for each histogram its count as name + "_count"; labelled cells as
// name + "_" + their label values.
class FlatStats final : public StatsVisitor {
 public:
  std::vector<std::pair<std::string, double>> values;

  void Counter(std::string_view name, std::string_view help, const metrics::Counter& c) override;
  void Gauge(std::string_view name, std::string_view help, const metrics::Gauge& g) override;
  void Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h) override;
  void Counters(std::string_view name, std::string_view help, const metrics::Counter* cells, size_t n,
                const LabelFn& labels) override;
  void ShardGauge(std::string_view name, std::string_view help, const metrics::Gauge& g) override;
  void ShardGauges(std::string_view name, std::string_view help, const metrics::Gauge* cells, size_t n,
                   const LabelFn& labels) override;
};

// The standard process families: process_resident_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds.
void CollectProcess(std::vector<prometheus::MetricFamily>* out);

}  // namespace longlink::metrics
