// Registry and connection table: login (Add), lookup for delivery (First + walk) and logout (Remove).
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "gateway/conn.h"

namespace longlink::gateway {
namespace {

struct Fixture {
  ConnTable table;
  std::vector<uint32_t> ids;
  explicit Fixture(uint32_t n) {
    (void)table.Init(n + 16);
    ids.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t id = table.Alloc();
      table[id].state = ConnState::kActive;
      table[id].user_id = 1000003ull * i;
      table[id].device_id = 1;
      ids.push_back(id);
    }
  }
};

void BM_RegistryAdd(benchmark::State& state) {
  uint32_t n = static_cast<uint32_t>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    Fixture f(n);
    Registry r(&f.table);
    state.ResumeTiming();
    for (uint32_t id : f.ids) benchmark::DoNotOptimize(r.Add(id));
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_RegistryAdd)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

void BM_RegistryLookup(benchmark::State& state) {
  uint32_t n = static_cast<uint32_t>(state.range(0));
  Fixture f(n);
  Registry r(&f.table);
  for (uint32_t id : f.ids) r.Add(id);
  std::mt19937_64 rng(1);
  std::vector<uint64_t> users(4096);
  for (auto& u : users) u = 1000003ull * (rng() % n);
  size_t i = 0;
  for (auto _ : state) {
    uint32_t found = 0;
    for (uint32_t id = r.First(users[i++ & 4095]); id != kNoConn; id = f.table[id].next) ++found;
    benchmark::DoNotOptimize(found);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RegistryLookup)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

void BM_RegistryAddRemove(benchmark::State& state) {
  uint32_t n = static_cast<uint32_t>(state.range(0));
  Fixture f(n);
  Registry r(&f.table);
  for (uint32_t id : f.ids) r.Add(id);
  size_t i = 0;
  for (auto _ : state) {
    uint32_t id = f.ids[i++ % n];
    r.Remove(id);
    r.Add(id);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RegistryAddRemove)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

}  // namespace
}  // namespace longlink::gateway
