// Delivery ledger: per-event cost on a shard, Merge cost, and the memory whole runs need.
//
// The scenario benchmarks replay a run single-threaded (shard = client % shards) and report heap bytes
// in use afterwards (glibc mallinfo2, so allocator overhead is included) next to the ledger's own
// estimate (MemoryBytes). Run them with --benchmark_filter=Scenario.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "benchmark/benchmark.h"
#include "loadgen/ledger.h"

namespace longlink::loadgen {
namespace {

// ---------------------------------------------------------------------------------------------------
// Per-event costs

void BM_LedgerSentAcked(benchmark::State& state) {
  LedgerShard shard;
  std::mt19937 rng(1);
  uint32_t seq = 0;
  for (auto _ : state) {
    uint64_t id = MakeMessageId(7, ++seq);
    uint32_t recipient = rng() % 1'000'000;
    shard.Sent(id);
    shard.Acked(id, {&recipient, 1});
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("random single recipient: one run per message");
}
BENCHMARK(BM_LedgerSentAcked);

void BM_LedgerDeliveredInOrder(benchmark::State& state) {
  // Streams from 1000 senders to one recipient each, interleaved.
  LedgerShard shard;
  std::vector<uint32_t> next(1000, 1);
  uint32_t i = 0;
  for (auto _ : state) {
    uint32_t sender = i++ % 1000;
    benchmark::DoNotOptimize(shard.Delivered(sender + 5000, MakeMessageId(sender, next[sender]++)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LedgerDeliveredInOrder);

void BM_LedgerDeliveredReordered(benchmark::State& state) {
  // One stream, each block of 16 seqs delivered in shuffled order.
  LedgerShard shard;
  std::mt19937 rng(2);
  std::vector<uint32_t> block(16);
  uint32_t base = 0;
  size_t pos = 16;
  for (auto _ : state) {
    if (pos == 16) {
      for (uint32_t k = 0; k < 16; ++k) block[k] = base + 1 + k;
      std::shuffle(block.begin(), block.end(), rng);
      base += 16;
      pos = 0;
    }
    benchmark::DoNotOptimize(shard.Delivered(2, MakeMessageId(1, block[pos++])));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LedgerDeliveredReordered);

void BM_LedgerDeliveredRandomPairs(benchmark::State& state) {
  // 1:1 chat with random targets: nearly every delivery opens a new (sender, recipient) pair.
  LedgerShard shard;
  std::mt19937 rng(3);
  std::vector<uint32_t> next(1'000'000, 1);
  for (auto _ : state) {
    uint32_t sender = rng() % 1'000'000;
    benchmark::DoNotOptimize(shard.Delivered(rng() % 1'000'000, MakeMessageId(sender, next[sender]++)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LedgerDeliveredRandomPairs);

void BM_LedgerDeliveredDuplicate(benchmark::State& state) {
  LedgerShard shard;
  for (uint32_t seq = 1; seq <= 10'000; ++seq) shard.Delivered(2, MakeMessageId(1, seq));
  uint32_t seq = 0;
  for (auto _ : state) benchmark::DoNotOptimize(shard.Delivered(2, MakeMessageId(1, seq++ % 10'000 + 1)));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LedgerDeliveredDuplicate);

// ---------------------------------------------------------------------------------------------------
// Whole runs

size_t HeapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

enum class Traffic {
  kChatRandom,  // to a random user: the target's devices plus the sender's other devices
  kEcho,        // to the sender's own devices
  kGroup,       // to every member of the sender's group
};

struct Run {
  uint32_t clients;
  uint32_t messages_per_client;
  uint32_t devices_per_user;
  uint32_t group_size;
  Traffic traffic;
};

void RunScenario(benchmark::State& state, const Run& run) {
  constexpr uint32_t kShards = 4;
  for (auto _ : state) {
    malloc_trim(0);
    size_t heap_before = HeapInUse();
    uint64_t messages = 0;
    uint64_t deliveries = 0;
    double merge_seconds = 0;
    size_t ledger_bytes = 0;
    size_t heap_bytes = 0;
    size_t pairs = 0;
    size_t streams = 0;
    size_t spilled = 0;
    {
      std::vector<LedgerShard> shards(kShards);
      std::mt19937_64 rng(42);
      std::vector<uint32_t> recipients;
      uint32_t users = run.clients / run.devices_per_user;
      auto first_device = [&](uint32_t client) { return client / run.devices_per_user * run.devices_per_user; };
      for (uint32_t seq = 1; seq <= run.messages_per_client; ++seq) {
        for (uint32_t sender = 0; sender < run.clients; ++sender) {
          recipients.clear();
          if (run.traffic == Traffic::kGroup) {
            uint32_t first = sender / run.group_size * run.group_size;
            for (uint32_t m = first; m < first + run.group_size; ++m) recipients.push_back(m);
          } else {
            uint32_t own = first_device(sender);
            if (run.traffic == Traffic::kChatRandom) {
              uint32_t target = static_cast<uint32_t>(rng() % users) * run.devices_per_user;
              for (uint32_t d = 0; d < run.devices_per_user; ++d) recipients.push_back(target + d);
              for (uint32_t d = 0; d < run.devices_per_user; ++d) {
                if (own + d != sender) recipients.push_back(own + d);
              }
            } else {
              for (uint32_t d = 0; d < run.devices_per_user; ++d) recipients.push_back(own + d);
            }
          }
          // Chatting with oneself lists one's own devices twice; the server delivers once per device.
          std::sort(recipients.begin(), recipients.end());
          recipients.erase(std::unique(recipients.begin(), recipients.end()), recipients.end());
          uint64_t id = MakeMessageId(sender, seq);
          LedgerShard& home = shards[sender % kShards];
          home.Sent(id);
          home.Acked(id, recipients);
          for (uint32_t r : recipients) shards[r % kShards].Delivered(r, id);
          ++messages;
          deliveries += recipients.size();
        }
      }
      auto start = std::chrono::steady_clock::now();
      LedgerTotals totals = Merge(std::span<const LedgerShard>(shards));
      merge_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!totals.Clean() || totals.delivered_unique != totals.expected_deliveries) {
        state.SkipWithError("ledger totals are not clean");
      }
      for (const LedgerShard& s : shards) {
        ledger_bytes += s.MemoryBytes();
        pairs += s.pair_count();
        streams += s.stream_count();
        spilled += s.spilled_count();
      }
      heap_bytes = HeapInUse() - heap_before;
    }
    constexpr double kMiB = 1024.0 * 1024.0;
    state.counters["messages"] = static_cast<double>(messages);
    state.counters["deliveries"] = static_cast<double>(deliveries);
    state.counters["pairs"] = static_cast<double>(pairs);
    state.counters["streams"] = static_cast<double>(streams);
    state.counters["spilled"] = static_cast<double>(spilled);
    state.counters["heap_MiB"] = static_cast<double>(heap_bytes) / kMiB;
    state.counters["ledger_MiB"] = static_cast<double>(ledger_bytes) / kMiB;
    state.counters["heap_B_per_msg"] = static_cast<double>(heap_bytes) / static_cast<double>(messages);
    state.counters["merge_s"] = merge_seconds;
    state.counters["events_per_s"] =
        benchmark::Counter(static_cast<double>(messages * 2 + deliveries), benchmark::Counter::kIsRate);
  }
}

// 1,000,000 clients (one device per user) each sending 5 messages to random users.
void BM_ScenarioMillionClientsRandomChat(benchmark::State& state) {
  RunScenario(state, {1'000'000, 5, 1, 0, Traffic::kChatRandom});
}
BENCHMARK(BM_ScenarioMillionClientsRandomChat)->Iterations(1)->Unit(benchmark::kSecond);

// Same with two devices per user: each message goes to the target's two devices and the sender's other.
void BM_ScenarioMillionClientsRandomChatTwoDevices(benchmark::State& state) {
  RunScenario(state, {1'000'000, 5, 2, 0, Traffic::kChatRandom});
}
BENCHMARK(BM_ScenarioMillionClientsRandomChatTwoDevices)->Iterations(1)->Unit(benchmark::kSecond);

// 10,000 clients sending 100 msg/s for 60 s to themselves (echo backend).
void BM_ScenarioTenThousandClientsEcho(benchmark::State& state) {
  RunScenario(state, {10'000, 6'000, 1, 0, Traffic::kEcho});
}
BENCHMARK(BM_ScenarioTenThousandClientsEcho)->Iterations(1)->Unit(benchmark::kSecond);

// The same rate in groups of 10: each message fans out to 10 devices (600 M deliveries).
void BM_ScenarioTenThousandClientsGroupsOfTen(benchmark::State& state) {
  RunScenario(state, {10'000, 6'000, 1, 10, Traffic::kGroup});
}
BENCHMARK(BM_ScenarioTenThousandClientsGroupsOfTen)->Iterations(1)->Unit(benchmark::kSecond);

// 10,000 clients chatting with random users at 100 msg/s, for 6 s: the sparse case, where memory grows
// per delivery; scale to 60 s by the per-message figure.
void BM_ScenarioTenThousandClientsRandomChat(benchmark::State& state) {
  RunScenario(state, {10'000, 600, 1, 0, Traffic::kChatRandom});
}
BENCHMARK(BM_ScenarioTenThousandClientsRandomChat)->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
}  // namespace longlink::loadgen
