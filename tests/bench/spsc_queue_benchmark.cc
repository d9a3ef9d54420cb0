// Cross-thread throughput of one SpscQueue cell: a producer thread (the benchmark loop) and a consumer
// thread. A side that finds the ring full or empty yields, as a shard would go back to its event loop
// instead of spinning; pure spinning collapses to a few hundred thousand items/s whenever the two threads
// do not each have a core to themselves. Figures depend heavily on that.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "core/spsc_queue.h"

namespace longlink::core {
namespace {

constexpr uint64_t kItemsPerIteration = 4096;

// A message the size a shard would pass (connection slot, generation, payload handle).
struct Item {
  uint64_t seq;
  uint32_t conn;
  uint32_t gen;
  uint64_t handle;
};

template <bool kBatch>
void BM_Throughput(benchmark::State& state) {
  SpscQueue<Item> q(static_cast<size_t>(state.range(0)));
  std::atomic<bool> done{false};
  uint64_t consumed = 0;
  std::thread consumer([&] {
    Item batch[64];
    // Stops only once the producer is done and the ring is drained.
    for (;;) {
      size_t n = 0;
      if constexpr (kBatch) {
        n = q.PopBatch(batch, 64);
      } else {
        n = q.TryPop(&batch[0]) ? 1 : 0;
      }
      if (n == 0) {
        if (done.load(std::memory_order_acquire) && q.SizeApprox() == 0) {
          break;
        }
        std::this_thread::yield();
        continue;
      }
      consumed += n;
      benchmark::DoNotOptimize(batch[0].seq);
    }
  });

  uint64_t seq = 0;
  for (auto _ : state) {
    for (uint64_t i = 0; i < kItemsPerIteration;) {
      if (q.TryPush(Item{seq, 1, 2, seq})) {
        ++seq;
        ++i;
      } else {
        std::this_thread::yield();
      }
    }
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  if (consumed != seq) {
    state.SkipWithError("consumer lost items");
  }
  state.SetItemsProcessed(static_cast<int64_t>(seq));
  state.SetBytesProcessed(static_cast<int64_t>(seq * sizeof(Item)));
}

void BM_ThroughputPop(benchmark::State& state) { BM_Throughput<false>(state); }
void BM_ThroughputPopBatch(benchmark::State& state) { BM_Throughput<true>(state); }
BENCHMARK(BM_ThroughputPop)->Arg(256)->Arg(4096)->UseRealTime();
BENCHMARK(BM_ThroughputPopBatch)->Arg(256)->Arg(4096)->UseRealTime();

// Uncontended cost of a push and a pop on one thread: the floor under the figures above.
void BM_SameThreadPushPop(benchmark::State& state) {
  SpscQueue<Item> q(1024);
  Item out{};
  uint64_t seq = 0;
  for (auto _ : state) {
    q.TryPush(Item{seq++, 1, 2, 3});
    q.TryPop(&out);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SameThreadPushPop);

}  // namespace
}  // namespace longlink::core
