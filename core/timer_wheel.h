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
//
// Semantics worth knowing:
//  - A timer armed for a tick not after now() ("overdue") fires on the next Advance, even one that does
//    not move time forward. During Advance(t), now() is already t, so a callback that re-arms for a tick
//    <= t defers that timer to the next Advance instead of firing it again in this one.
//  - Within one Advance that moves less than a revolution, timers fire in tick order (overdue ones
//    first); timers sharing a tick fire in no particular order. A jump of a revolution or more visits
//    every slot once and fires everything due, not in tick order.
//  - Ids must be below 2^31 (the top bit of a list link marks a slot head; a 2^31-entry node array would
//    be 32 GiB anyway).
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace longlink::core {

class TimerWheel {
 public:
  static constexpr uint32_t kNone = 0xffffffffu;

  // slots must be a power of two (other values are rounded up). now_tick is the current time in ticks.
  explicit TimerWheel(uint32_t slots = 4096, uint64_t now_tick = 0);

  // Reserves room for ids below `ids` up front (address space only: pages are touched as ids come into
  // use), so the node array never moves or doubles while it grows to that size.
  void Reserve(uint32_t ids);

  // Arms (or re-arms) timer id to fire at expiry_tick. A tick not after the wheel's current tick fires on
  // the next Advance.
  void Arm(uint32_t id, uint64_t expiry_tick);
  // Disarms id; no effect if it is not armed (or was never armed).
  void Cancel(uint32_t id);
  bool Armed(uint32_t id) const;
  // The expiry tick of an armed timer; UINT64_MAX when id is not armed.
  uint64_t Expiry(uint32_t id) const;

  // Moves the wheel to now_tick and calls fn(id) for every timer whose expiry_tick <= now_tick. The timer
  // is disarmed before fn runs; fn may arm or cancel any timer, including this one. fn must not call
  // Advance. A now_tick earlier than now() is treated as now().
  template <class Fn>
  void Advance(uint64_t now_tick, Fn&& fn);

  uint64_t now() const { return now_; }
  size_t armed_count() const { return armed_; }

  // Ticks from now() to the first slot within the next `limit` ticks that holds any timer (overdue timers
  // wait in the next slot, so they answer 1); `limit` when there is none. A slot's timers may belong to a
  // later revolution, so this is a lower bound on the next expiry: enough to sleep until then. Costs at
  // most `limit` slot reads.
  uint64_t IdleTicks(uint64_t limit) const {
    if (armed_ == 0) return limit;
    for (uint64_t t = 1; t <= limit; ++t) {
      if (heads_[SlotOf(now_ + t)] != kNone) return t;
    }
    return limit;
  }

 private:
  // 16 bytes, so four nodes share a cache line and a million timers cost 16 MiB.
  struct Node {
    uint32_t next = kNone;
    // Previous node in the slot list, or kHeadFlag | slot for the first node. Knowing the slot from the
    // node alone lets Unlink stay O(1) for overdue timers, whose slot cannot be derived from expiry.
    uint32_t prev = kNone;
    uint64_t expiry = kUnarmed;
  };
  static constexpr uint64_t kUnarmed = ~uint64_t{0};
  static constexpr uint32_t kHeadFlag = 0x80000000u;
  static_assert(sizeof(Node) <= 16);

  void Link(uint32_t id, uint32_t slot);
  void Unlink(uint32_t id);
  uint32_t SlotOf(uint64_t tick) const { return static_cast<uint32_t>(tick) & mask_; }

  std::vector<Node> nodes_;
  std::vector<uint32_t> heads_;
  uint32_t mask_;
  uint64_t now_;
  size_t armed_ = 0;
  // The node Advance visits next in the slot it is walking. Unlink steps it forward when fn removes that
  // node, so fn may cancel or move any timer, including the one after the firing timer.
  uint32_t cursor_ = kNone;
#ifndef NDEBUG
  bool advancing_ = false;
#endif
};

inline void TimerWheel::Link(uint32_t id, uint32_t slot) {
  Node& n = nodes_[id];
  const uint32_t old_head = heads_[slot];
  // Push at the front: a node linked while Advance walks this slot lands behind the cursor and so is not
  // visited again in the same walk.
  n.next = old_head;
  n.prev = kHeadFlag | slot;
  if (old_head != kNone) {
    nodes_[old_head].prev = id;
  }
  heads_[slot] = id;
}

inline void TimerWheel::Unlink(uint32_t id) {
  Node& n = nodes_[id];
  if (id == cursor_) {
    cursor_ = n.next;
  }
  if (n.next != kNone) {
    nodes_[n.next].prev = n.prev;
  }
  if (n.prev & kHeadFlag) {
    heads_[n.prev & ~kHeadFlag] = n.next;
  } else {
    nodes_[n.prev].next = n.next;
  }
  n.next = kNone;
  n.prev = kNone;
}

template <class Fn>
void TimerWheel::Advance(uint64_t now_tick, Fn&& fn) {
#ifndef NDEBUG
  assert(!advancing_ && "TimerWheel::Advance is not reentrant");
#endif
  if (now_tick < now_) {
    now_tick = now_;
  }
  const uint64_t from = now_;
  // Set before any callback so that Arm() inside fn classifies ticks <= now_tick as overdue and parks
  // them in SlotOf(now_tick + 1), a slot this walk has either passed already or never reaches.
  now_ = now_tick;
  if (armed_ == 0) {
    return;
  }

  const uint64_t slot_count = uint64_t{mask_} + 1;
  // Overdue timers wait in SlotOf(from + 1), so even an Advance that does not move time looks there.
  uint64_t first = from + 1;
  uint64_t span = now_tick - from;
  if (span == 0) {
    span = 1;
  }
  if (span >= slot_count) {
    // One revolution covers every slot. Starting at SlotOf(now_tick + 1) means timers deferred by
    // callbacks land in the slot walked first, which is never walked again in this Advance.
    first = now_tick + 1 - slot_count;
    span = slot_count;
  }

#ifndef NDEBUG
  advancing_ = true;
#endif
  for (uint64_t i = 0; i < span && armed_ != 0; ++i) {
    cursor_ = heads_[SlotOf(first + i)];
    while (cursor_ != kNone) {
      const uint32_t id = cursor_;
      Node& n = nodes_[id];
      cursor_ = n.next;
      // Later revolutions share this slot; they stay put.
      if (n.expiry > now_tick) {
        continue;
      }
      Unlink(id);
      n.expiry = kUnarmed;
      --armed_;
      // fn may grow nodes_, so n is not used past this point.
      fn(id);
    }
  }
  cursor_ = kNone;
#ifndef NDEBUG
  advancing_ = false;
#endif
}

}  // namespace longlink::core
