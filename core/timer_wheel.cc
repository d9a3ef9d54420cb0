#include "core/timer_wheel.h"

#include <algorithm>
#include <bit>

namespace longlink::core {

namespace {

// The top bit of a list link marks a slot head, so slot indices must fit in 31 bits.
constexpr uint32_t kMaxSlots = 0x80000000u;

uint32_t RoundSlots(uint32_t slots) {
  if (slots <= 1) {
    return 1;
  }
  if (slots >= kMaxSlots) {
    return kMaxSlots;
  }
  return std::bit_ceil(slots);
}

}  // namespace

TimerWheel::TimerWheel(uint32_t slots, uint64_t now_tick)
    : heads_(RoundSlots(slots), kNone), mask_(RoundSlots(slots) - 1), now_(now_tick) {}

void TimerWheel::Reserve(uint32_t ids) { nodes_.reserve(ids); }

void TimerWheel::Arm(uint32_t id, uint64_t expiry_tick) {
  assert(id < kHeadFlag);
  if (id >= nodes_.size()) {
    if (id < nodes_.capacity()) {
      // Within the reserved capacity growth never moves nodes, so it goes in small steps: only nodes
      // that may soon be used get touched (and count as resident memory).
      nodes_.resize(std::min(nodes_.capacity(), std::max<size_t>(size_t{id} + 1, nodes_.size() + 1024)));
    } else {
      // Doubling keeps growth amortised O(1) when ids are handed out one by one.
      nodes_.resize(std::max<size_t>(size_t{id} + 1, nodes_.size() * 2));
    }
  }
  // kUnarmed doubles as the "not armed" marker, so the furthest tick a timer can name is one short of it.
  expiry_tick = std::min(expiry_tick, kUnarmed - 1);
  Node& n = nodes_[id];
  if (n.expiry != kUnarmed) {
    Unlink(id);
  } else {
    ++armed_;
  }
  n.expiry = expiry_tick;
  // Overdue timers all wait in the slot of the next tick, which the next Advance always visits.
  Link(id, SlotOf(expiry_tick > now_ ? expiry_tick : now_ + 1));
}

void TimerWheel::Cancel(uint32_t id) {
  if (id >= nodes_.size() || nodes_[id].expiry == kUnarmed) {
    return;
  }
  Unlink(id);
  nodes_[id].expiry = kUnarmed;
  --armed_;
}

bool TimerWheel::Armed(uint32_t id) const { return id < nodes_.size() && nodes_[id].expiry != kUnarmed; }

uint64_t TimerWheel::Expiry(uint32_t id) const { return id < nodes_.size() ? nodes_[id].expiry : kUnarmed; }

}  // namespace longlink::core
