// Paces the group commits of every shard of one process. Each shard's log commits on its own (one
// fdatasync per --fsync-interval-ms at most), so with more shards than cores the syncs would multiply
// with the shard count: each costs CPU in an io-wq worker (about 200 us on the benchmark machine) plus
// the device flush. The pacer keeps the process to one sync per interval per core on average, with up
// to one per core at once: a shard that finds no slot keeps appending to its batch and tries again when
// one frees up, so under load its commits grow instead of multiplying, and when few shards have traffic
// nothing waits.
//
// It is a GCRA (generic cell rate algorithm) over one atomic "theoretical arrival time": a sync may start
// at `now` if that time is at most `tolerance` ahead of `now`, and taking it moves the time on by one
// spacing. Shards call it once per group commit, not per message.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace longlink::gateway::local {

class SyncPacer {
 public:
  // `spacing_ns` between syncs on average (0: no pacing), at most `burst` at once.
  SyncPacer(uint64_t spacing_ns, uint32_t burst)
      : spacing_ns_(spacing_ns), tolerance_ns_(spacing_ns * (std::max<uint32_t>(burst, 1) - 1)) {}

  // True if a sync may start at `now_ns`; it then holds a slot. Otherwise `*retry_ns` is the earliest
  // time one can be taken.
  bool TryTake(uint64_t now_ns, uint64_t* retry_ns) {
    if (spacing_ns_ == 0) return true;
    // Relaxed: the atomic carries only this time value; nothing else is published through it.
    uint64_t tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t base = std::max(tat, now_ns);
      if (base > now_ns + tolerance_ns_) {
        *retry_ns = base - tolerance_ns_;
        return false;
      }
      if (tat_.compare_exchange_weak(tat, base + spacing_ns_, std::memory_order_relaxed)) return true;
    }
  }

 private:
  const uint64_t spacing_ns_;
  const uint64_t tolerance_ns_;
  std::atomic<uint64_t> tat_{0};
};

}  // namespace longlink::gateway::local
