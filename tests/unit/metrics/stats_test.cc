#include "metrics/stats.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>

#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace longlink::metrics {
namespace {

#define TEST_COUNTERS(C) C(sends_total, "Sends") C(drops_total, "Drops")
#define TEST_GAUGES(G) G(users, "Users")
#define TEST_HISTOGRAMS(H) H(wait_seconds, "Waits")

struct TestStats {
  LL_STATS_FIELDS(TEST_COUNTERS, TEST_GAUGES, TEST_HISTOGRAMS)
  std::array<Counter, 3> by_kind;
  Gauge queue;
  void Visit(StatsVisitor& v) const {
    LL_STATS_VISIT(TEST_COUNTERS, TEST_GAUGES, TEST_HISTOGRAMS)
    v.Counters("kinds_total", "By kind", by_kind.data(), by_kind.size(), [](size_t i, Labels* l) {
      if (i == 1) return false;  // an unused slot
      l->emplace_back("kind", i == 0 ? "a" : "c");
      return true;
    });
    v.ShardGauge("queue", "Per shard", queue);
  }
};

std::string Render(const std::vector<prometheus::MetricFamily>& f) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, f);
  return out.str();
}

TEST(StatsTest, PrometheusSumsShardsAndKeepsPerShardGauges) {
  TestStats s0, s1;
  s0.sends_total.Inc(3);
  s1.sends_total.Inc(4);
  s0.users.Set(10);
  s1.users.Set(5);
  s0.by_kind[0].Inc(1);
  s1.by_kind[2].Inc(2);
  s0.queue.Set(7);
  s1.queue.Set(8);
  s0.wait_seconds.Observe(0.001);
  s1.wait_seconds.Observe(0.002);
  s1.wait_seconds.Observe(100);
  PrometheusStats p("x_");
  p.BeginShard(0);
  s0.Visit(p);
  p.BeginShard(1);
  s1.Visit(p);
  std::vector<prometheus::MetricFamily> out;
  p.AppendTo(&out);
  std::map<std::string, const prometheus::MetricFamily*> by_name;
  for (const auto& f : out) by_name[f.name] = &f;
  ASSERT_EQ(by_name.size(), 6u) << Render(out);
  EXPECT_EQ(by_name["x_sends_total"]->metric.at(0).counter.value, 7);
  EXPECT_EQ(by_name["x_drops_total"]->metric.at(0).counter.value, 0);
  EXPECT_EQ(by_name["x_users"]->metric.at(0).gauge.value, 15);
  const auto& kinds = by_name["x_kinds_total"]->metric;
  ASSERT_EQ(kinds.size(), 2u);  // the skipped slot is not a series
  EXPECT_EQ(kinds[0].label.at(0).value, "a");
  EXPECT_EQ(kinds[0].counter.value, 1);
  EXPECT_EQ(kinds[1].label.at(0).value, "c");
  EXPECT_EQ(kinds[1].counter.value, 2);
  const auto& queue = by_name["x_queue"]->metric;
  ASSERT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue[0].label.at(0).value, "0");
  EXPECT_EQ(queue[0].gauge.value, 7);
  EXPECT_EQ(queue[1].label.at(0).value, "1");
  EXPECT_EQ(queue[1].gauge.value, 8);
  const auto& h = by_name["x_wait_seconds"]->metric.at(0).histogram;
  EXPECT_EQ(h.sample_count, 3u);
  EXPECT_NEAR(h.sample_sum, 100.003, 1e-9);
  EXPECT_EQ(h.bucket.back().cumulative_count, 3u);
}

TEST(StatsTest, FlatNamesDropTotalAndCountHistograms) {
  TestStats s;
  s.sends_total.Inc(2);
  s.by_kind[2].Inc(5);
  s.wait_seconds.Observe(0.5);
  FlatStats f;
  s.Visit(f);
  std::map<std::string, double> m(f.values.begin(), f.values.end());
  EXPECT_EQ(m.size(), f.values.size()) << "no name twice";
  EXPECT_EQ(m["sends"], 2);
  EXPECT_EQ(m["users"], 0);
  EXPECT_EQ(m["wait_seconds_count"], 1);
  EXPECT_EQ(m["kinds_c"], 5);
  EXPECT_EQ(m.count("kinds_b"), 0u);
  EXPECT_EQ(m["queue"], 0);
}

}  // namespace
}  // namespace longlink::metrics
