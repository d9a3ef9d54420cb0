#include "metrics/metrics.h"

#include <algorithm>

namespace longlink::metrics {

Buckets Buckets::Exponential(double start, double factor, int count) {
  Buckets b;
  double v = start;
  for (int i = 0; i < count; ++i) {
    b.upper_bounds.push_back(v);
    v *= factor;
  }
  return b;
}

const Buckets& LatencyBuckets() {
  static const Buckets kBuckets = Buckets::Exponential(0.00001, 2, 22);
  return kBuckets;
}

Histogram::Histogram(const Buckets* buckets)
    : buckets_(buckets), counts_(new Counter[buckets->upper_bounds.size() + 1]) {}

void Histogram::Observe(double v) {
  const auto& b = buckets_->upper_bounds;
  size_t i = static_cast<size_t>(std::lower_bound(b.begin(), b.end(), v) - b.begin());
  counts_[i].Inc();
  sum_.store(sum_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

void Histogram::AddTo(std::vector<uint64_t>* counts, double* sum) const {
  size_t n = buckets_->upper_bounds.size() + 1;
  counts->resize(n, 0);
  for (size_t i = 0; i < n; ++i) (*counts)[i] += counts_[i].Get();
  *sum += sum_.load(std::memory_order_relaxed);
}

}  // namespace longlink::metrics
