#include "loadgen/histogram.h"

#include <algorithm>
#include <cmath>

namespace longlink::loadgen {

Histogram::Histogram(uint64_t max_trackable_ns)
    : max_trackable_(std::max<uint64_t>(max_trackable_ns, 1)), counts_(BucketIndex(max_trackable_) + 1, 0) {}

uint64_t Histogram::BucketLowest(size_t index) {
  // Buckets below 2 * kSubBuckets are one value wide (e == 0); above, index / kSubBuckets == e + 1.
  size_t top = index >> kSubBucketBits;
  int e = top == 0 ? 0 : static_cast<int>(top) - 1;
  uint64_t sub = index - (static_cast<uint64_t>(e) << kSubBucketBits);
  return sub << e;
}

uint64_t Histogram::BucketHighest(size_t index) {
  size_t top = index >> kSubBucketBits;
  int e = top == 0 ? 0 : static_cast<int>(top) - 1;
  return BucketLowest(index) + (uint64_t{1} << e) - 1;
}

uint64_t Histogram::ValueAtPercentile(double p) const {
  if (count_ == 0) return 0;
  if (!(p > 0)) return min_;  // also catches NaN
  if (p >= 100) return max_;
  // The small subtraction keeps p/100 * count from landing just above an integer through rounding
  // (99.9% of 1000 must be rank 999, not 1000).
  double exact = p / 100.0 * static_cast<double>(count_);
  uint64_t rank = static_cast<uint64_t>(std::ceil(exact - exact * 1e-12));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  // Only the buckets between Min and Max can hold samples.
  size_t last = BucketIndex(max_);
  uint64_t seen = 0;
  for (size_t i = BucketIndex(min_); i <= last; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(BucketHighest(i), min_, max_);
  }
  return max_;
}

Histogram Histogram::Since(const Histogram& earlier) const {
  Histogram out(max_trackable_);
  if (earlier.max_trackable_ != max_trackable_ || earlier.count_ > count_) return out;
  for (size_t i = 0; i < counts_.size(); ++i) {
    uint64_t n = counts_[i] - std::min(counts_[i], earlier.counts_[i]);
    if (n == 0) continue;
    out.counts_[i] = n;
    out.count_ += n;
    out.min_ = std::min(out.min_, BucketLowest(i));
    out.max_ = std::max(out.max_, BucketHighest(i));
  }
  out.sum_ = sum_ - earlier.sum_;
  out.clamped_ = clamped_ - std::min(clamped_, earlier.clamped_);
  return out;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  if (other.max_trackable_ == max_trackable_) {
    size_t last = BucketIndex(other.max_);
    for (size_t i = BucketIndex(other.min_); i <= last; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    clamped_ += other.clamped_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
    return;
  }
  // Different layouts: re-record each bucket at its highest value, but keep other's exact extremes and
  // sum where they fit our range (p == 0 and p == 100 promise exact extremes).
  double sum_before = sum_;
  size_t last = BucketIndex(other.max_);
  for (size_t i = BucketIndex(other.min_); i <= last; ++i) {
    if (other.counts_[i] == 0) continue;
    RecordN(std::clamp(BucketHighest(i), other.min_, other.max_), other.counts_[i]);
  }
  min_ = std::min(min_, std::min(other.min_, max_trackable_));
  if (other.max_ <= max_trackable_) sum_ = sum_before + other.sum_;
  // Where other's limit is above ours, its clamped samples sit above our limit and RecordN counted them.
  if (other.max_trackable_ <= max_trackable_) clamped_ += other.clamped_;
}

void Histogram::Reset() {
  // Only the buckets between Min and Max can be non-zero.
  if (count_ != 0) std::fill(counts_.begin() + BucketIndex(min_), counts_.begin() + BucketIndex(max_) + 1, 0);
  count_ = 0;
  clamped_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

}  // namespace longlink::loadgen
