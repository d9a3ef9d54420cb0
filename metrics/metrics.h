// Metric cells owned by one shard thread and read by the scrape thread.
//
// A shard bumps its own cells with a relaxed load and store (a plain add on x86), never a read-modify-write,
// so the hot path has no atomic instruction; the scraper sums all shards' cells at scrape time. Reads may
// see a value a moment old, which is what a scrape means anyway.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace longlink::metrics {

class Counter {
 public:
  void Inc(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }
  // For a count kept elsewhere (a library's own statistics): copies its current value.
  void Mirror(uint64_t v) { v_.store(v, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t n) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  int64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Bucket bounds shared by every shard's copy of one histogram.
struct Buckets {
  std::vector<double> upper_bounds;  // ascending, +Inf implied
  // Exponential bounds: start, start*factor, ... (count of them).
  static Buckets Exponential(double start, double factor, int count);
};

// The buckets of every latency histogram: 10 us doubling up to about 21 s.
const Buckets& LatencyBuckets();

class Histogram {
 public:
  Histogram() : Histogram(&LatencyBuckets()) {}
  explicit Histogram(const Buckets* buckets);
  void Observe(double v);
  const Buckets& buckets() const { return *buckets_; }
  // Adds this histogram's per-bucket (non-cumulative) counts into counts (size = bounds + 1) and its sum.
  void AddTo(std::vector<uint64_t>* counts, double* sum) const;

 private:
  const Buckets* buckets_;
  std::unique_ptr<Counter[]> counts_;
  std::atomic<double> sum_{0};
};

}  // namespace longlink::metrics
