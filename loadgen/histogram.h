// A latency histogram with a fixed relative error over a huge range (log-linear buckets, after
// HdrHistogram): each shard records into its own, the report merges them and reads percentiles.
//
// Values are nanoseconds. [0, 256) is counted exactly; above that, every power-of-two range
// [2^k, 2^(k+1)) is split into 128 equal sub-buckets, so a bucket is at most 1/128 (0.78%) of its lowest
// value wide. ValueAtPercentile reports the highest value of the bucket that holds the requested rank
// (clamped to the recorded Min/Max), so it never under-reports and is at most 0.78% above the exact
// nearest-rank percentile.
//
// The bucket array is sized once, at construction, for the largest trackable value (default: one hour,
// 4562 buckets of 8 bytes = 36 KiB); Record never allocates. A value above the largest trackable one is
// counted as that value (and in Clamped()), so counts stay exact and nothing is dropped.
//
// Not thread-safe: one histogram belongs to one shard thread; merge copies after the shards stop (or from
// snapshots they hand over).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace longlink::loadgen {

class Histogram {
 public:
  // log2 of the sub-buckets per power of two: the relative bucket width is at most 2^-kSubBucketBits.
  static constexpr int kSubBucketBits = 7;
  static constexpr uint64_t kDefaultMaxTrackableNs = 3'600'000'000'000ull;  // one hour

  // max_trackable_ns is raised to at least 1.
  explicit Histogram(uint64_t max_trackable_ns = kDefaultMaxTrackableNs);

  // O(1); the only data-dependent choices are min/max, compiled to conditional moves.
  void Record(uint64_t ns) { RecordN(ns, 1); }
  // Records n samples of one value (Merge across layouts uses it; so can callers that batch).
  void RecordN(uint64_t ns, uint64_t n) {
    clamped_ += (ns > max_trackable_) ? n : 0;
    uint64_t v = std::min(ns, max_trackable_);
    counts_[BucketIndex(v)] += n;
    count_ += n;
    sum_ += static_cast<double>(v) * static_cast<double>(n);
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }

  uint64_t Count() const { return count_; }
  // Exact smallest / largest recorded (clamped) value; 0 when empty.
  uint64_t Min() const { return count_ == 0 ? 0 : min_; }
  uint64_t Max() const { return count_ == 0 ? 0 : max_; }
  // Exact mean of the recorded (clamped) values while their sum stays below 2^53 ns (104 days); 0 when
  // empty.
  double Mean() const { return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_); }
  // Samples that were above max_trackable() and counted as max_trackable().
  uint64_t Clamped() const { return clamped_; }

  // p in [0, 100] (clamped). The nearest-rank percentile: the value v such that ceil(p/100 * Count())
  // samples (at least one) are <= v, reported as its bucket's highest value within [Min(), Max()].
  // p == 0 returns Min() and p == 100 returns Max() exactly. 0 when empty.
  uint64_t ValueAtPercentile(double p) const;

  // Adds every sample of other. Histograms with the same max_trackable merge bucket by bucket (exact);
  // otherwise other's buckets are re-recorded at their highest values.
  void Merge(const Histogram& other);
  void Reset();
  // The samples recorded since `earlier`, a copy of this histogram taken before (same layout): for the
  // percentiles of one interval of a run. Min and max become the bounds of the outermost buckets.
  Histogram Since(const Histogram& earlier) const;

  uint64_t max_trackable() const { return max_trackable_; }
  size_t bucket_count() const { return counts_.size(); }
  size_t MemoryBytes() const { return sizeof(*this) + counts_.capacity() * sizeof(uint64_t); }

  // Bucket geometry, public for tests. Values below 2 * 2^kSubBucketBits map to themselves; above,
  // bucket = e * 2^kSubBucketBits + (v >> e) where e = floor(log2 v) - kSubBucketBits.
  static size_t BucketIndex(uint64_t v) {
    // OR-ing in the linear range's mask makes small values take e == 0 without a branch.
    int e = 63 - std::countl_zero(v | kLinearMask) - kSubBucketBits;
    return (static_cast<size_t>(e) << kSubBucketBits) + static_cast<size_t>(v >> e);
  }
  static uint64_t BucketLowest(size_t index);
  static uint64_t BucketHighest(size_t index);

 private:
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;
  static constexpr uint64_t kLinearMask = 2 * kSubBuckets - 1;

  uint64_t max_trackable_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t clamped_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  // A double rather than a uint64_t: a long run of clamped one-hour samples would overflow 64 bits.
  double sum_ = 0;
};

}  // namespace longlink::loadgen
