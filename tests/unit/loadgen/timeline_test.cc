#include "loadgen/timeline.h"

#include <gtest/gtest.h>

#include "loadgen/histogram.h"

namespace longlink::loadgen {
namespace {

TimelinePoint At(double t, double sent, double online, double p99) {
  TimelinePoint p;
  p.t_s = t;
  p.sent = sent;
  p.online = online;
  p.e2e_p99 = p99;
  return p;
}

TEST(TimelineTest, KeepsOnePointPerSecondWhileShort) {
  Timeline tl;
  for (int i = 1; i <= 100; ++i) tl.Add(At(i, i, i * 10, 1));
  ASSERT_EQ(tl.points().size(), 100u);
  EXPECT_EQ(tl.spacing_s(), 1u);
  EXPECT_DOUBLE_EQ(tl.points()[41].sent, 42);
  EXPECT_DOUBLE_EQ(tl.points()[41].t_s, 42);
}

TEST(TimelineTest, StaysBoundedOverAWeek) {
  Timeline tl;
  const int kWeek = 7 * 24 * 3600;
  double total_sent = 0;
  for (int i = 1; i <= kWeek; ++i) {
    // 100 msg/s, with one bad second at 3 days.
    tl.Add(At(i, 100, 5000, i == 3 * 24 * 3600 ? 900 : 2));
    total_sent += 100;
    ASSERT_LE(tl.points().size(), Timeline::kMaxPoints) << "after " << i << " s";
  }
  EXPECT_GE(tl.points().size(), Timeline::kMaxPoints / 2);
  EXPECT_GT(tl.spacing_s(), 256u);
  // Rates stay rates (per second) after merging, and the points still span the run.
  double spaced_sent = 0;
  double worst = 0;
  for (const TimelinePoint& p : tl.points()) {
    EXPECT_DOUBLE_EQ(p.sent, 100);
    EXPECT_DOUBLE_EQ(p.online, 5000);
    spaced_sent += p.sent * tl.spacing_s();
    worst = std::max(worst, p.e2e_p99);
  }
  EXPECT_GT(tl.points().back().t_s, kWeek - 2.0 * tl.spacing_s());
  EXPECT_LE(spaced_sent, total_sent);
  EXPECT_GT(spaced_sent, 0.95 * total_sent);
  // The worst second survives the merging.
  EXPECT_DOUBLE_EQ(worst, 900);
}

TEST(TimelineTest, MergeAveragesRatesAndKeepsTheLastPopulation) {
  TimelinePoint p[2] = {At(1, 10, 100, 5), At(2, 30, 200, 3)};
  TimelinePoint m = MergePoints(p, 2);
  EXPECT_DOUBLE_EQ(m.t_s, 2);
  EXPECT_DOUBLE_EQ(m.sent, 20);
  EXPECT_DOUBLE_EQ(m.online, 200);
  EXPECT_DOUBLE_EQ(m.e2e_p99, 5);
}

TEST(HistogramSinceTest, PercentilesOfOneInterval) {
  Histogram before;
  for (int i = 0; i < 1000; ++i) before.Record(1'000'000);  // 1 ms
  Histogram now = before;
  for (int i = 0; i < 100; ++i) now.Record(50'000'000);  // 50 ms, in the interval
  Histogram interval = now.Since(before);
  EXPECT_EQ(interval.Count(), 100u);
  EXPECT_GE(interval.ValueAtPercentile(50), 50'000'000u);
  EXPECT_LE(interval.ValueAtPercentile(50), 50'000'000ull * 129 / 128);
  // Nothing new: empty.
  EXPECT_EQ(now.Since(now).Count(), 0u);
  // A copy that is not older (more samples) gives nothing rather than nonsense.
  EXPECT_EQ(before.Since(now).Count(), 0u);
}

}  // namespace
}  // namespace longlink::loadgen
