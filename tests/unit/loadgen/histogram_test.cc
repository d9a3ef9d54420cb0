#include "loadgen/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace longlink::loadgen {
namespace {

constexpr double kMaxRelativeError = 1.0 / 128;

// The nearest-rank percentile of sorted samples, with the same rank rule Histogram documents.
uint64_t SortedPercentile(const std::vector<uint64_t>& sorted, double p) {
  if (p <= 0) return sorted.front();
  if (p >= 100) return sorted.back();
  double exact = p / 100.0 * static_cast<double>(sorted.size());
  uint64_t rank = static_cast<uint64_t>(std::ceil(exact - exact * 1e-12));
  rank = std::clamp<uint64_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// The histogram may report up to one bucket above the exact value, never below it.
void ExpectWithinPrecision(uint64_t reported, uint64_t exact, const std::string& what) {
  EXPECT_GE(reported, exact) << what;
  EXPECT_LE(static_cast<double>(reported), static_cast<double>(exact) * (1 + kMaxRelativeError)) << what;
}

TEST(HistogramTest, BucketsTileTheRangeWithBoundedWidth) {
  Histogram h;
  ASSERT_EQ(Histogram::BucketLowest(0), 0u);
  for (size_t i = 0; i + 1 < h.bucket_count(); ++i) {
    uint64_t lo = Histogram::BucketLowest(i);
    uint64_t hi = Histogram::BucketHighest(i);
    ASSERT_LE(lo, hi);
    ASSERT_EQ(hi + 1, Histogram::BucketLowest(i + 1)) << i;
    ASSERT_EQ(Histogram::BucketIndex(lo), i);
    ASSERT_EQ(Histogram::BucketIndex(hi), i);
    if (lo >= 256) {
      ASSERT_LE(static_cast<double>(hi - lo + 1) / static_cast<double>(lo), kMaxRelativeError) << i;
    } else {
      ASSERT_EQ(lo, hi);  // exact below 256
    }
  }
  EXPECT_EQ(Histogram::BucketIndex(h.max_trackable()), h.bucket_count() - 1);
}

TEST(HistogramTest, DefaultCoversAnHourInTensOfKiB) {
  Histogram h;
  EXPECT_EQ(h.max_trackable(), 3'600'000'000'000ull);
  EXPECT_EQ(h.bucket_count(), 4562u);
  EXPECT_LT(h.MemoryBytes(), 40u * 1024);
  Histogram second(1'000'000'000);  // one second
  EXPECT_LT(second.MemoryBytes(), 24u * 1024);
}

TEST(HistogramTest, EmptyReportsZeros) {
  Histogram h;
  EXPECT_EQ(h.Count(), 0u);
  EXPECT_EQ(h.Min(), 0u);
  EXPECT_EQ(h.Max(), 0u);
  EXPECT_EQ(h.Mean(), 0.0);
  EXPECT_EQ(h.ValueAtPercentile(0), 0u);
  EXPECT_EQ(h.ValueAtPercentile(50), 0u);
  EXPECT_EQ(h.ValueAtPercentile(100), 0u);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.Count(), 100u);
  EXPECT_EQ(h.Min(), 1u);
  EXPECT_EQ(h.Max(), 100u);
  EXPECT_DOUBLE_EQ(h.Mean(), 50.5);
  EXPECT_EQ(h.ValueAtPercentile(0), 1u);
  EXPECT_EQ(h.ValueAtPercentile(1), 1u);
  EXPECT_EQ(h.ValueAtPercentile(50), 50u);
  EXPECT_EQ(h.ValueAtPercentile(50.5), 51u);
  EXPECT_EQ(h.ValueAtPercentile(90), 90u);
  EXPECT_EQ(h.ValueAtPercentile(99), 99u);
  EXPECT_EQ(h.ValueAtPercentile(99.9), 100u);
  EXPECT_EQ(h.ValueAtPercentile(100), 100u);
}

TEST(HistogramTest, UniformMillionWithinPrecision) {
  Histogram h;
  std::vector<uint64_t> sorted;
  for (uint64_t v = 1; v <= 1'000'000; ++v) {
    h.Record(v * 1000);  // 1 us .. 1 s
    sorted.push_back(v * 1000);
  }
  for (double p : {0.0, 0.001, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0}) {
    ExpectWithinPrecision(h.ValueAtPercentile(p), SortedPercentile(sorted, p), "p=" + std::to_string(p));
  }
  // Exact nearest ranks on this distribution: p50 is the 500000th sample, p99.9 the 999000th.
  ExpectWithinPrecision(h.ValueAtPercentile(50), 500'000'000, "p50");
  ExpectWithinPrecision(h.ValueAtPercentile(99.9), 999'000'000, "p99.9");
  EXPECT_EQ(h.ValueAtPercentile(100), 1'000'000'000u);
  EXPECT_DOUBLE_EQ(h.Mean(), 500'000.5 * 1000);
}

TEST(HistogramTest, TwoPointDistribution) {
  // 99% at 1 ms, 1% at 2 s: p99 is still 1 ms, anything above is 2 s.
  Histogram h;
  for (int i = 0; i < 9900; ++i) h.Record(1'000'000);
  for (int i = 0; i < 100; ++i) h.Record(2'000'000'000);
  ExpectWithinPrecision(h.ValueAtPercentile(50), 1'000'000, "p50");
  ExpectWithinPrecision(h.ValueAtPercentile(99), 1'000'000, "p99");
  ExpectWithinPrecision(h.ValueAtPercentile(99.01), 2'000'000'000, "p99.01");
  EXPECT_EQ(h.ValueAtPercentile(100), 2'000'000'000u);
  // Values reported from a bucket never leave [Min, Max].
  Histogram one;
  one.Record(123'456'789);
  for (double p : {0.0, 1.0, 50.0, 99.0, 100.0}) EXPECT_EQ(one.ValueAtPercentile(p), 123'456'789u);
}

TEST(HistogramTest, ExtremesClampAndCount) {
  Histogram h(1'000'000);
  h.Record(0);
  h.Record(1);
  h.Record(std::numeric_limits<uint64_t>::max());
  h.Record(1'000'001);
  EXPECT_EQ(h.Count(), 4u);
  EXPECT_EQ(h.Clamped(), 2u);
  EXPECT_EQ(h.Min(), 0u);
  EXPECT_EQ(h.Max(), 1'000'000u);
  EXPECT_EQ(h.ValueAtPercentile(0), 0u);
  EXPECT_EQ(h.ValueAtPercentile(25), 0u);
  EXPECT_EQ(h.ValueAtPercentile(50), 1u);
  EXPECT_EQ(h.ValueAtPercentile(75), 1'000'000u);
  EXPECT_EQ(h.ValueAtPercentile(100), 1'000'000u);
  EXPECT_DOUBLE_EQ(h.Mean(), (0 + 1 + 1'000'000 + 1'000'000) / 4.0);

  Histogram tiny(0);  // raised to 1
  tiny.Record(5);
  EXPECT_EQ(tiny.Max(), 1u);
  EXPECT_EQ(tiny.Clamped(), 1u);

  Histogram hour;
  hour.Record(std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(hour.Max(), Histogram::kDefaultMaxTrackableNs);
  EXPECT_EQ(hour.ValueAtPercentile(50), Histogram::kDefaultMaxTrackableNs);
}

TEST(HistogramTest, OutOfRangePercentilesClamp) {
  Histogram h;
  for (uint64_t v = 1000; v <= 2000; ++v) h.Record(v);
  EXPECT_EQ(h.ValueAtPercentile(-5), 1000u);
  EXPECT_EQ(h.ValueAtPercentile(250), 2000u);
  EXPECT_EQ(h.ValueAtPercentile(std::numeric_limits<double>::quiet_NaN()), 1000u);
}

void ExpectSameHistogram(const Histogram& a, const Histogram& b) {
  EXPECT_EQ(a.Count(), b.Count());
  EXPECT_EQ(a.Min(), b.Min());
  EXPECT_EQ(a.Max(), b.Max());
  EXPECT_EQ(a.Clamped(), b.Clamped());
  EXPECT_DOUBLE_EQ(a.Mean(), b.Mean());
  for (int i = 0; i <= 10000; ++i) {
    double p = i / 100.0;
    ASSERT_EQ(a.ValueAtPercentile(p), b.ValueAtPercentile(p)) << "p=" << p;
  }
}

TEST(HistogramTest, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> latency(13, 1.5);  // median ~0.44 ms, long tail
  Histogram all;
  std::vector<Histogram> shards(4);
  for (int i = 0; i < 200'000; ++i) {
    uint64_t v = static_cast<uint64_t>(latency(rng));
    if (i % 1000 == 0) v = std::numeric_limits<uint64_t>::max();  // a few clamped samples too
    all.Record(v);
    shards[rng() % shards.size()].Record(v);
  }
  Histogram merged;
  for (const Histogram& s : shards) merged.Merge(s);
  ExpectSameHistogram(merged, all);

  // Merging an empty histogram changes nothing; merging into an empty one copies.
  Histogram empty;
  merged.Merge(empty);
  ExpectSameHistogram(merged, all);
  empty.Merge(all);
  ExpectSameHistogram(empty, all);
}

TEST(HistogramTest, MergeAcrossLayoutsKeepsPrecision) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<uint64_t> dist(1, 500'000'000);
  Histogram small(1'000'000'000);  // 1 s
  std::vector<uint64_t> sorted;
  for (int i = 0; i < 50'000; ++i) {
    uint64_t v = dist(rng);
    small.Record(v);
    sorted.push_back(v);
  }
  std::sort(sorted.begin(), sorted.end());
  Histogram big;  // 1 h
  big.Merge(small);
  EXPECT_EQ(big.Count(), small.Count());
  EXPECT_EQ(big.Min(), small.Min());
  EXPECT_EQ(big.Max(), small.Max());
  EXPECT_DOUBLE_EQ(big.Mean(), small.Mean());
  for (double p : {0.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    ExpectWithinPrecision(big.ValueAtPercentile(p), SortedPercentile(sorted, p), "p=" + std::to_string(p));
  }

  // Into a narrower histogram: values above its limit clamp and are counted as clamped.
  Histogram narrow(100'000'000);
  narrow.Merge(small);
  EXPECT_EQ(narrow.Count(), small.Count());
  EXPECT_EQ(narrow.Max(), 100'000'000u);
  uint64_t above = sorted.end() - std::upper_bound(sorted.begin(), sorted.end(), uint64_t{100'000'000});
  // Samples in the bucket holding the limit may be re-recorded at its highest value, just above it.
  EXPECT_GE(narrow.Clamped(), above);
  EXPECT_LE(static_cast<double>(narrow.Clamped()), above + 0.01 * static_cast<double>(sorted.size()));
}

TEST(HistogramTest, ResetForgetsEverything) {
  Histogram h;
  for (uint64_t v = 1; v < 100'000; v += 7) h.Record(v);
  h.Record(std::numeric_limits<uint64_t>::max());
  h.Reset();
  EXPECT_EQ(h.Count(), 0u);
  EXPECT_EQ(h.Clamped(), 0u);
  EXPECT_EQ(h.Max(), 0u);
  EXPECT_EQ(h.ValueAtPercentile(50), 0u);
  h.Record(42);
  EXPECT_EQ(h.Min(), 42u);
  EXPECT_EQ(h.Max(), 42u);
  EXPECT_EQ(h.ValueAtPercentile(50), 42u);
  EXPECT_EQ(h.ValueAtPercentile(1), 42u);
}

struct Distribution {
  const char* name;
  std::function<uint64_t(std::mt19937_64&)> draw;
};

TEST(HistogramTest, RandomizedAgainstSorting) {
  std::vector<Distribution> distributions = {
      {"uniform_1ns_1s", [](std::mt19937_64& r) { return std::uniform_int_distribution<uint64_t>(1, 1e9)(r); }},
      {"exponential_1ms",
       [](std::mt19937_64& r) { return static_cast<uint64_t>(std::exponential_distribution<double>(1e-6)(r)); }},
      {"lognormal_wide",
       [](std::mt19937_64& r) { return static_cast<uint64_t>(std::lognormal_distribution<double>(12, 3)(r)); }},
      {"bimodal_cache_hit_miss",
       [](std::mt19937_64& r) { return (r() % 10 == 0) ? 5'000'000 + r() % 50'000'000 : 20'000 + r() % 5'000; }},
      {"pareto_tail",
       [](std::mt19937_64& r) {
         double u = std::uniform_real_distribution<double>(0, 1)(r);
         return static_cast<uint64_t>(10'000 / std::pow(1 - u, 1 / 1.2));
       }},
      {"tiny_values", [](std::mt19937_64& r) { return r() % 300; }},
      {"powers_of_two_edges",
       [](std::mt19937_64& r) {
         uint64_t e = 8 + r() % 33;
         return (uint64_t{1} << e) + (r() % 3) - 1;
       }},
  };
  std::mt19937_64 rng(2024);
  for (const Distribution& d : distributions) {
    Histogram h;
    std::vector<uint64_t> sorted;
    sorted.reserve(100'000);
    double sum = 0;
    for (int i = 0; i < 100'000; ++i) {
      uint64_t v = std::min(d.draw(rng), Histogram::kDefaultMaxTrackableNs);
      h.Record(v);
      sorted.push_back(v);
      sum += static_cast<double>(v);
    }
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(h.Count(), sorted.size()) << d.name;
    EXPECT_EQ(h.Min(), sorted.front()) << d.name;
    EXPECT_EQ(h.Max(), sorted.back()) << d.name;
    EXPECT_NEAR(h.Mean(), sum / sorted.size(), 1e-9 * sum / sorted.size()) << d.name;
    std::vector<double> ps = {0, 0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 99.999, 100};
    std::uniform_real_distribution<double> any_p(0, 100);
    for (int i = 0; i < 200; ++i) ps.push_back(any_p(rng));
    for (double p : ps) {
      ExpectWithinPrecision(h.ValueAtPercentile(p), SortedPercentile(sorted, p),
                            std::string(d.name) + " p=" + std::to_string(p));
    }
  }
}

}  // namespace
}  // namespace longlink::loadgen
