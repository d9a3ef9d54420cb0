// A hashed timing wheel: one per shard, for login deadlines, heartbeat timeouts and write deadlines.
//
// Timers are named by a dense uint32 id chosen by the owner (for connections: slot * kinds + kind), so a
// timer needs no allocation and its node lives in a flat array that grows on demand. Arm, re-arm and
// cancel are O(1). Advance() visits only the wheel slots whose ticks have passed; a timer further away
// than one revolution stays in its slot and is skipped (rounds) until its tick comes. Nothing scans all
// timers.
//
// Time is measured in ticks (the shard picks the tick length, e.g. 10 ms). Not thread-safe: a wheel
// belongs to one shard thread.
#pragma once

#include <cstdint>
#include <vector>

namespace longlink::core {

class TimerWheel {
 public:
  static constexpr uint32_t kNone = 0xffffffffu;

  // slots must be a power of two. now_tick is the current time in ticks.
  explicit TimerWheel(uint32_t slots = 4096, uint64_t now_tick = 0);

  // Arms (or re-arms) timer id to fire at expiry_tick. A tick not after the wheel's current tick fires on
  // the next Advance.
  void Arm(uint32_t id, uint64_t expiry_tick);
  // Disarms id; no effect if it is not armed.
  void Cancel(uint32_t id);
  bool Armed(uint32_t id) const;
  // The expiry tick of an armed timer.
  uint64_t Expiry(uint32_t id) const;

  // Moves the wheel to now_tick and calls fn(id) for every timer whose expiry_tick <= now_tick. The timer
  // is disarmed before fn runs; fn may arm or cancel any timer, including this one.
  template <class Fn>
  void Advance(uint64_t now_tick, Fn&& fn);

  uint64_t now() const { return now_; }
  size_t armed_count() const { return armed_; }

 private:
  struct Node {
    uint32_t next = kNone;
    uint32_t prev = kNone;
    uint64_t expiry = 0;  // kUnarmed when not in the wheel
  };
  static constexpr uint64_t kUnarmed = ~uint64_t{0};

  void Link(uint32_t id, uint32_t slot);
  void Unlink(uint32_t id);
  uint32_t SlotOf(uint64_t tick) const { return static_cast<uint32_t>(tick) & mask_; }

  std::vector<Node> nodes_;
  std::vector<uint32_t> heads_;
  uint32_t mask_;
  uint64_t now_;
  size_t armed_ = 0;
};

template <class Fn>
void TimerWheel::Advance(uint64_t now_tick, Fn&& fn) {
  // Implementation to be completed (see core/timer_wheel.cc).
  (void)now_tick;
  (void)fn;
}

}  // namespace longlink::core
