// Latency histogram: the per-sample Record cost on a shard, and the report-side reads and merges.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "loadgen/histogram.h"

namespace longlink::loadgen {
namespace {

std::vector<uint64_t> Latencies(size_t n) {
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> dist(13, 1.5);  // median ~0.44 ms with a long tail
  std::vector<uint64_t> v(n);
  for (auto& x : v) x = static_cast<uint64_t>(dist(rng));
  return v;
}

void BM_HistogramRecord(benchmark::State& state) {
  std::vector<uint64_t> values = Latencies(1 << 16);
  Histogram h;
  size_t i = 0;
  for (auto _ : state) {
    h.Record(values[i++ & 0xffff]);
  }
  benchmark::DoNotOptimize(h.Count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramRecord);

void BM_HistogramValueAtPercentile(benchmark::State& state) {
  Histogram h;
  for (uint64_t v : Latencies(1'000'000)) h.Record(v);
  double p = static_cast<double>(state.range(0)) / 1000;
  for (auto _ : state) benchmark::DoNotOptimize(h.ValueAtPercentile(p));
  state.SetLabel("p=" + std::to_string(p));
}
BENCHMARK(BM_HistogramValueAtPercentile)->Arg(50'000)->Arg(99'000)->Arg(99'990);

void BM_HistogramMerge(benchmark::State& state) {
  std::vector<Histogram> shards(8);
  std::vector<uint64_t> values = Latencies(1'000'000);
  for (size_t i = 0; i < values.size(); ++i) shards[i % shards.size()].Record(values[i]);
  for (auto _ : state) {
    Histogram total;
    for (const Histogram& s : shards) total.Merge(s);
    benchmark::DoNotOptimize(total.Count());
  }
  state.SetItemsProcessed(state.iterations() * shards.size());
  state.SetLabel("8 shards into a fresh histogram, per shard");
}
BENCHMARK(BM_HistogramMerge);

void BM_HistogramMergeFullRange(benchmark::State& state) {
  // Worst case: samples spanning 1 ns .. 1 h, so every bucket is walked.
  Histogram a;
  Histogram b;
  for (uint64_t v = 1; v < Histogram::kDefaultMaxTrackableNs; v = v * 11 / 10 + 1) {
    a.Record(v);
    b.Record(v);
  }
  for (auto _ : state) {
    a.Merge(b);
    benchmark::DoNotOptimize(a.Count());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramMergeFullRange);

}  // namespace
}  // namespace longlink::loadgen
