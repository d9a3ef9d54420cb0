// Timer wheel costs per operation, with N timers already armed so slot lists have realistic lengths.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/timer_wheel.h"

namespace longlink::core {
namespace {

constexpr uint32_t kSlots = 4096;

// Deltas spread over four revolutions, like a mix of heartbeat and login deadlines.
std::vector<uint64_t> Deltas(size_t n) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<uint64_t> d(1, kSlots * 4);
  std::vector<uint64_t> out(n);
  for (auto& x : out) {
    x = d(rng);
  }
  return out;
}

// Arming N previously unarmed timers.
void BM_Arm(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const std::vector<uint64_t> deltas = Deltas(n);
  TimerWheel w(kSlots);
  for (uint32_t id = 0; id < n; ++id) {
    w.Arm(id, 1);  // pre-grow the node array
    w.Cancel(id);
  }
  for (auto _ : state) {
    for (uint32_t id = 0; id < n; ++id) {
      w.Arm(id, deltas[id]);
    }
    state.PauseTiming();
    for (uint32_t id = 0; id < n; ++id) {
      w.Cancel(id);
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Arm)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

// Re-arming armed timers to a new deadline: what every heartbeat does.
void BM_ReArm(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const std::vector<uint64_t> deltas = Deltas(n + 7);
  TimerWheel w(kSlots);
  for (uint32_t id = 0; id < n; ++id) {
    w.Arm(id, deltas[id]);
  }
  uint32_t id = 0;
  uint32_t k = 0;
  for (auto _ : state) {
    w.Arm(id, deltas[k]);
    if (++id == n) {
      id = 0;
    }
    if (++k == n + 7) {
      k = 0;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReArm)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

// Cancelling N armed timers.
void BM_Cancel(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const std::vector<uint64_t> deltas = Deltas(n);
  TimerWheel w(kSlots);
  for (auto _ : state) {
    state.PauseTiming();
    for (uint32_t id = 0; id < n; ++id) {
      w.Arm(id, deltas[id]);
    }
    state.ResumeTiming();
    for (uint32_t id = 0; id < n; ++id) {
      w.Cancel(id);
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Cancel)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

// One tick of Advance with N timers spread over four revolutions; each fired timer is re-armed so the
// population stays at N. Items are ticks; the "fired" counter is timers fired per second.
void BM_AdvanceOneTick(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const std::vector<uint64_t> deltas = Deltas(n);
  TimerWheel w(kSlots);
  for (uint32_t id = 0; id < n; ++id) {
    w.Arm(id, deltas[id]);
  }
  uint64_t fired = 0;
  for (auto _ : state) {
    const uint64_t now = w.now() + 1;
    w.Advance(now, [&](uint32_t id) {
      ++fired;
      w.Arm(id, now + deltas[id]);
    });
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["fired"] = benchmark::Counter(static_cast<double>(fired), benchmark::Counter::kIsRate);
  state.counters["timers"] = n;
}
BENCHMARK(BM_AdvanceOneTick)->Arg(0)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

// A stalled shard catching up 100 ticks at once.
void BM_AdvanceHundredTicks(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const std::vector<uint64_t> deltas = Deltas(n);
  TimerWheel w(kSlots);
  for (uint32_t id = 0; id < n; ++id) {
    w.Arm(id, deltas[id]);
  }
  uint64_t fired = 0;
  for (auto _ : state) {
    const uint64_t now = w.now() + 100;
    w.Advance(now, [&](uint32_t id) {
      ++fired;
      w.Arm(id, now + deltas[id]);
    });
  }
  state.SetItemsProcessed(state.iterations() * 100);
  state.counters["fired"] = benchmark::Counter(static_cast<double>(fired), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AdvanceHundredTicks)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

}  // namespace
}  // namespace longlink::core
