#include "core/timer_wheel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace longlink::core {
namespace {

using Fired = std::vector<std::pair<uint64_t, uint32_t>>;  // (tick of the Advance, id)

// Advances one tick at a time up to `to`, recording which tick each timer fired on.
Fired StepTo(TimerWheel& w, uint64_t to) {
  Fired fired;
  for (uint64_t t = w.now() + 1; t <= to; ++t) {
    w.Advance(t, [&](uint32_t id) { fired.emplace_back(t, id); });
  }
  return fired;
}

TEST(TimerWheelTest, FiresEachTimerAtItsTick) {
  TimerWheel w(64);
  w.Arm(1, 5);
  w.Arm(2, 3);
  w.Arm(3, 9);
  w.Arm(4, 3);
  EXPECT_EQ(w.armed_count(), 4u);
  EXPECT_TRUE(w.Armed(1));
  EXPECT_EQ(w.Expiry(3), 9u);

  Fired fired = StepTo(w, 20);
  std::sort(fired.begin(), fired.end());
  EXPECT_EQ(fired, (Fired{{3, 2}, {3, 4}, {5, 1}, {9, 3}}));
  EXPECT_EQ(w.armed_count(), 0u);
  EXPECT_FALSE(w.Armed(1));
  EXPECT_EQ(w.now(), 20u);
}

TEST(TimerWheelTest, IdleTicksBoundsTheNextExpiry) {
  TimerWheel w(64, 100);
  EXPECT_EQ(w.IdleTicks(50), 50u);  // nothing armed
  w.Arm(1, 130);
  EXPECT_EQ(w.IdleTicks(50), 30u);
  EXPECT_EQ(w.IdleTicks(10), 10u);
  w.Arm(2, 90);  // overdue: fires on the next Advance
  EXPECT_EQ(w.IdleTicks(50), 1u);
  w.Cancel(2);
  // A timer a revolution away shares a slot with now + 6: IdleTicks answers early, never late.
  w.Cancel(1);
  w.Arm(3, 100 + 64 + 6);
  EXPECT_EQ(w.IdleTicks(50), 6u);
  // Sleeping IdleTicks at a time never passes an expiry.
  w.Arm(4, 120);
  uint64_t now = 100;
  while (w.Armed(4)) {
    uint64_t step = w.IdleTicks(50);
    ASSERT_LE(now + step, 120u + 0u) << "slept past the expiry";
    now += step;
    w.Advance(now, [](uint32_t) {});
  }
  EXPECT_EQ(now, 120u);
}

TEST(TimerWheelTest, JumpWithinRevolutionFiresInTickOrder) {
  TimerWheel w(64);
  const std::vector<uint64_t> expiries = {40, 7, 63, 1, 22, 22, 50};
  for (uint32_t id = 0; id < expiries.size(); ++id) {
    w.Arm(id, expiries[id]);
  }
  std::vector<uint64_t> order;
  w.Advance(63, [&](uint32_t id) { order.push_back(expiries[id]); });
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 7, 22, 22, 40, 50, 63}));
}

TEST(TimerWheelTest, DoesNotFireBeforeExpiry) {
  TimerWheel w(16, 100);
  w.Arm(0, 110);
  int calls = 0;
  w.Advance(109, [&](uint32_t) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(w.Armed(0));
  w.Advance(110, [&](uint32_t) { ++calls; });
  EXPECT_EQ(calls, 1);
}

TEST(TimerWheelTest, ReArmMovesTimer) {
  TimerWheel w(64);
  w.Arm(7, 5);
  w.Arm(7, 12);  // later
  EXPECT_EQ(w.armed_count(), 1u);
  EXPECT_EQ(w.Expiry(7), 12u);
  EXPECT_EQ(StepTo(w, 11), Fired{});
  EXPECT_EQ(StepTo(w, 20), (Fired{{12, 7}}));

  w.Arm(8, 40);
  w.Arm(8, 25);  // earlier
  EXPECT_EQ(StepTo(w, 40), (Fired{{25, 8}}));
}

TEST(TimerWheelTest, ReArmToSameSlotNextRevolution) {
  TimerWheel w(8);
  w.Arm(1, 3);
  w.Arm(1, 3 + 8 * 4);
  EXPECT_EQ(StepTo(w, 100), (Fired{{35, 1}}));
}

TEST(TimerWheelTest, CancelDisarms) {
  TimerWheel w(64);
  w.Arm(1, 5);
  w.Arm(2, 5);
  w.Arm(3, 5);
  w.Cancel(2);
  EXPECT_FALSE(w.Armed(2));
  EXPECT_EQ(w.armed_count(), 2u);
  w.Cancel(2);  // twice is harmless
  EXPECT_EQ(w.armed_count(), 2u);
  Fired fired = StepTo(w, 10);
  std::sort(fired.begin(), fired.end());
  EXPECT_EQ(fired, (Fired{{5, 1}, {5, 3}}));
}

TEST(TimerWheelTest, UnknownIdsAreSafe) {
  TimerWheel w(64);
  EXPECT_FALSE(w.Armed(0));
  EXPECT_FALSE(w.Armed(1'000'000));
  EXPECT_EQ(w.Expiry(1'000'000), UINT64_MAX);
  w.Cancel(0);
  w.Cancel(1'000'000);
  w.Cancel(TimerWheel::kNone);
  EXPECT_EQ(w.armed_count(), 0u);

  // Growing the node array on demand keeps earlier timers.
  w.Arm(3, 10);
  w.Arm(100'000, 11);
  EXPECT_TRUE(w.Armed(3));
  EXPECT_FALSE(w.Armed(99'999));
  EXPECT_EQ(StepTo(w, 11), (Fired{{10, 3}, {11, 100'000}}));
}

TEST(TimerWheelTest, FarFutureTimerWaitsManyRevolutions) {
  TimerWheel w(8);
  const uint64_t far = 8 * 100 + 3;
  w.Arm(1, far);
  w.Arm(2, 3);  // shares the slot, fires on the first pass
  EXPECT_EQ(StepTo(w, far + 20), (Fired{{3, 2}, {far, 1}}));
}

TEST(TimerWheelTest, JumpOfManyRevolutionsFiresEverythingDue) {
  TimerWheel w(8);
  w.Arm(1, 5);
  w.Arm(2, 17);
  w.Arm(3, 1000);
  w.Arm(4, 1001);  // one tick too late
  w.Arm(5, 5000);
  std::set<uint32_t> fired;
  w.Advance(1000, [&](uint32_t id) { EXPECT_TRUE(fired.insert(id).second) << "fired twice: " << id; });
  EXPECT_EQ(fired, (std::set<uint32_t>{1, 2, 3}));
  EXPECT_TRUE(w.Armed(4));
  EXPECT_TRUE(w.Armed(5));
  EXPECT_EQ(StepTo(w, 1001), (Fired{{1001, 4}}));
  fired.clear();
  w.Advance(1'000'000, [&](uint32_t id) { fired.insert(id); });
  EXPECT_EQ(fired, (std::set<uint32_t>{5}));
}

TEST(TimerWheelTest, ArmingInThePastFiresOnNextAdvance) {
  TimerWheel w(64, 100);
  w.Arm(1, 50);
  w.Arm(2, 100);  // "now" counts as past
  w.Arm(3, 101);
  EXPECT_EQ(w.Expiry(1), 50u);  // the requested tick is kept
  std::set<uint32_t> fired;
  // Even without time moving, overdue timers fire.
  w.Advance(100, [&](uint32_t id) { fired.insert(id); });
  EXPECT_EQ(fired, (std::set<uint32_t>{1, 2}));
  EXPECT_TRUE(w.Armed(3));

  // A time moving backwards is treated as no move.
  w.Arm(4, 0);
  fired.clear();
  w.Advance(10, [&](uint32_t id) { fired.insert(id); });
  EXPECT_EQ(fired, (std::set<uint32_t>{4}));
  EXPECT_EQ(w.now(), 100u);
}

TEST(TimerWheelTest, OverdueTimerFiresOnLongJump) {
  TimerWheel w(8, 100);
  w.Arm(1, 3);
  std::vector<uint32_t> fired;
  w.Advance(100 + 8 * 10, [&](uint32_t id) { fired.push_back(id); });
  EXPECT_EQ(fired, std::vector<uint32_t>{1});
}

TEST(TimerWheelTest, ReArmInPastFromCallbackDefersToNextAdvance) {
  for (const uint64_t jump : {uint64_t{0}, uint64_t{1}, uint64_t{5}, uint64_t{8}, uint64_t{9}, uint64_t{100}}) {
    SCOPED_TRACE(jump);
    TimerWheel w(8, 1000);
    w.Arm(1, 0);
    int calls = 0;
    const auto rearm = [&](uint32_t id) {
      ++calls;
      w.Arm(id, w.now() - 1);  // always already past
    };
    w.Advance(w.now() + jump, rearm);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(w.Armed(1));
    w.Advance(w.now() + jump, rearm);
    EXPECT_EQ(calls, 2);
    w.Cancel(1);
    w.Advance(w.now() + jump, rearm);
    EXPECT_EQ(calls, 2);
  }
}

TEST(TimerWheelTest, ReArmForNowFromCallbackDefersToNextAdvance) {
  TimerWheel w(64);
  w.Arm(1, 10);
  int calls = 0;
  w.Advance(10, [&](uint32_t id) {
    ++calls;
    w.Arm(id, 10);
  });
  EXPECT_EQ(calls, 1);
  w.Advance(10, [&](uint32_t) { ++calls; });
  EXPECT_EQ(calls, 2);
}

TEST(TimerWheelTest, CallbackCancelsOthersInSameSlot) {
  // All timers share one slot; whichever fires first cancels the rest, including the list neighbour the
  // walk would visit next.
  TimerWheel w(16);
  for (uint32_t id = 0; id < 10; ++id) {
    w.Arm(id, 4);
  }
  std::vector<uint32_t> fired;
  w.Advance(4, [&](uint32_t id) {
    fired.push_back(id);
    for (uint32_t other = 0; other < 10; ++other) {
      w.Cancel(other);
    }
  });
  EXPECT_EQ(fired.size(), 1u);
  EXPECT_EQ(w.armed_count(), 0u);
}

TEST(TimerWheelTest, CallbackCancelsEveryOtherNeighbour) {
  TimerWheel w(16);
  for (uint32_t id = 0; id < 100; ++id) {
    w.Arm(id, 4);
  }
  std::set<uint32_t> fired;
  std::set<uint32_t> cancelled;
  w.Advance(4, [&](uint32_t id) {
    EXPECT_FALSE(cancelled.count(id)) << id;
    fired.insert(id);
    // Cancel some timer still pending in this slot (if any).
    for (uint32_t other = 0; other < 100; ++other) {
      if (w.Armed(other)) {
        w.Cancel(other);
        cancelled.insert(other);
        break;
      }
    }
  });
  EXPECT_EQ(fired.size() + cancelled.size(), 100u);
  EXPECT_EQ(w.armed_count(), 0u);
}

TEST(TimerWheelTest, CallbackMovesTheNodeTheWalkVisitsNext) {
  // The first timer to fire moves one of the two still pending in its slot to another slot's list. Which
  // one is next in the walk is an implementation detail, so try moving each; the other must still fire.
  for (const bool move_larger : {false, true}) {
    SCOPED_TRACE(move_larger);
    TimerWheel w(16);
    w.Arm(5, 9);
    w.Arm(6, 9);
    w.Arm(0, 4);
    w.Arm(1, 4);
    w.Arm(2, 4);
    std::vector<uint32_t> fired;
    uint32_t moved = TimerWheel::kNone;
    w.Advance(4, [&](uint32_t id) {
      fired.push_back(id);
      if (moved == TimerWheel::kNone) {
        std::vector<uint32_t> pending;
        for (uint32_t other = 0; other < 3; ++other) {
          if (w.Armed(other)) {
            pending.push_back(other);
          }
        }
        ASSERT_EQ(pending.size(), 2u);
        moved = move_larger ? pending[1] : pending[0];
        w.Arm(moved, 9);
      }
    });
    EXPECT_EQ(fired.size(), 2u);
    std::set<uint32_t> at_nine;
    w.Advance(9, [&](uint32_t id) { at_nine.insert(id); });
    EXPECT_EQ(at_nine, (std::set<uint32_t>{5, 6, moved}));
  }
}

TEST(TimerWheelTest, CallbackMovesOthersWithinAndAcrossSlots) {
  TimerWheel w(16);
  for (uint32_t id = 0; id < 6; ++id) {
    w.Arm(id, 4);
  }
  std::vector<std::pair<uint64_t, uint32_t>> fired;
  bool moved = false;
  w.Advance(4, [&](uint32_t id) {
    fired.emplace_back(4, id);
    if (!moved) {
      moved = true;
      // Every other pending timer moves: two to the same slot one revolution on, two to a later slot,
      // the rest stay. The walk must neither lose nor double-fire any of them.
      int n = 0;
      for (uint32_t other = 0; other < 6; ++other) {
        if (!w.Armed(other)) {
          continue;
        }
        if (n < 2) {
          w.Arm(other, 4 + 16);
        } else if (n < 4) {
          w.Arm(other, 9);
        }
        ++n;
      }
    }
  });
  EXPECT_EQ(fired.size(), 2u);  // the first, plus the one left in place
  Fired later = StepTo(w, 40);
  EXPECT_EQ(later.size(), 4u);
  EXPECT_EQ(later[0].first, 9u);
  EXPECT_EQ(later[1].first, 9u);
  EXPECT_EQ(later[2].first, 20u);
  EXPECT_EQ(later[3].first, 20u);
}

TEST(TimerWheelTest, CallbackArmsNewTimersIncludingGrowth) {
  TimerWheel w(16);
  w.Arm(0, 2);
  w.Arm(1, 2);
  std::vector<std::pair<uint64_t, uint32_t>> fired;
  w.Advance(10, [&](uint32_t id) {
    fired.emplace_back(w.now(), id);
    if (id < 2) {
      // A far id forces the node array to reallocate under Advance; tick 5 is inside this jump but
      // still fires only on the next Advance.
      w.Arm(50'000 + id, 5);
      w.Arm(10 + id, 12);
    }
  });
  EXPECT_EQ(fired.size(), 2u);
  EXPECT_EQ(w.armed_count(), 4u);
  std::set<uint32_t> next;
  w.Advance(11, [&](uint32_t id) { next.insert(id); });
  EXPECT_EQ(next, (std::set<uint32_t>{50'000, 50'001}));
  next.clear();
  w.Advance(12, [&](uint32_t id) { next.insert(id); });
  EXPECT_EQ(next, (std::set<uint32_t>{10, 11}));
}

TEST(TimerWheelTest, NonPowerOfTwoSlotsRoundUp) {
  TimerWheel w(100);
  w.Arm(1, 127);
  w.Arm(2, 128);
  EXPECT_EQ(StepTo(w, 128), (Fired{{127, 1}, {128, 2}}));
  TimerWheel one(0);
  one.Arm(1, 3);
  one.Arm(2, 1);
  EXPECT_EQ(StepTo(one, 5), (Fired{{1, 2}, {3, 1}}));
}

TEST(TimerWheelTest, HugeExpiryIsClampedButArmed) {
  TimerWheel w(8);
  w.Arm(1, UINT64_MAX);
  EXPECT_TRUE(w.Armed(1));
  int calls = 0;
  w.Advance(1'000'000, [&](uint32_t) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(w.Armed(1));
}

// Reference model: armed timers by expiry. Advance(t) must fire every timer that was armed before the
// Advance with expiry <= t, unless a callback in the same Advance cancelled or re-armed it first; a timer
// (re)armed by a callback for a tick <= t waits for the next Advance.
class Model {
 public:
  void Arm(uint32_t id, uint64_t expiry) {
    Cancel(id);
    where_[id] = by_expiry_.emplace(expiry, id);
  }
  void Cancel(uint32_t id) {
    auto it = where_.find(id);
    if (it != where_.end()) {
      by_expiry_.erase(it->second);
      where_.erase(it);
    }
  }
  bool Armed(uint32_t id) const { return where_.count(id) != 0; }
  uint64_t Expiry(uint32_t id) const { return where_.at(id)->first; }
  size_t size() const { return where_.size(); }
  const std::multimap<uint64_t, uint32_t>& by_expiry() const { return by_expiry_; }

 private:
  std::multimap<uint64_t, uint32_t> by_expiry_;
  std::map<uint32_t, std::multimap<uint64_t, uint32_t>::iterator> where_;
};

void RunRandomized(uint64_t seed, uint32_t slots, uint32_t ids, int ops, bool mutate_in_callbacks) {
  SCOPED_TRACE(::testing::Message() << "seed=" << seed << " slots=" << slots);
  std::mt19937_64 rng(seed);
  const auto uniform = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
  const uint64_t start = uniform(0, 1000);
  TimerWheel w(slots, start);
  Model m;

  // A random expiry: mostly near, some overdue, some many revolutions out.
  const auto random_expiry = [&](uint64_t now) -> uint64_t {
    switch (uniform(0, 9)) {
      case 0:
        return now - std::min<uint64_t>(now, uniform(0, 30));
      case 1:
        return now + uniform(slots, uint64_t{slots} * 6);
      default:
        return now + uniform(1, slots);
    }
  };

  std::set<uint32_t> touched;  // ids (re)armed or cancelled by callbacks during the current Advance
  size_t total_fired = 0;
  for (int op = 0; op < ops; ++op) {
    const uint64_t kind = uniform(0, 99);
    if (kind < 45) {
      const auto id = static_cast<uint32_t>(uniform(0, ids - 1));
      const uint64_t e = random_expiry(w.now());
      w.Arm(id, e);
      m.Arm(id, e);
    } else if (kind < 60) {
      const auto id = static_cast<uint32_t>(uniform(0, ids - 1));
      w.Cancel(id);
      m.Cancel(id);
    } else {
      uint64_t jump = 0;
      switch (uniform(0, 4)) {
        case 0:
          jump = 0;
          break;
        case 1:
          jump = 1;
          break;
        case 2:
          jump = uniform(1, slots / 4 + 1);
          break;
        case 3:
          jump = uniform(1, slots);
          break;
        default:
          jump = uniform(slots, uint64_t{slots} * 8);
          break;
      }
      const uint64_t from = w.now();
      const uint64_t to = from + jump;
      const bool ordered = jump < slots;
      uint64_t last_effective = 0;
      touched.clear();
      w.Advance(to, [&](uint32_t id) {
        ++total_fired;
        ASSERT_FALSE(w.Armed(id)) << "disarmed before the callback";
        ASSERT_TRUE(m.Armed(id)) << "fired a timer that is not armed: " << id;
        ASSERT_EQ(touched.count(id), 0u) << "fired a timer (re)armed during this Advance: " << id;
        const uint64_t expiry = m.Expiry(id);
        ASSERT_LE(expiry, to) << "fired early: " << id;
        if (ordered) {
          const uint64_t effective = std::max(expiry, from + 1);
          ASSERT_GE(effective, last_effective) << "out of tick order: " << id;
          last_effective = effective;
        }
        m.Cancel(id);
        if (!mutate_in_callbacks) {
          return;
        }
        // Random mutations, often of this timer or of ids likely to share its slot.
        const int n = static_cast<int>(uniform(0, 2));
        for (int k = 0; k < n; ++k) {
          uint32_t target = static_cast<uint32_t>(uniform(0, ids - 1));
          if (uniform(0, 2) == 0) {
            target = id;
          }
          touched.insert(target);
          if (uniform(0, 3) == 0) {
            w.Cancel(target);
            m.Cancel(target);
          } else {
            const uint64_t e = random_expiry(w.now());
            w.Arm(target, e);
            m.Arm(target, e);
          }
        }
      });
      if (::testing::Test::HasFatalFailure()) {
        return;
      }
      ASSERT_EQ(w.now(), to);
      // Everything due that no callback touched must have fired.
      for (auto it = m.by_expiry().begin(); it != m.by_expiry().end() && it->first <= to; ++it) {
        ASSERT_EQ(touched.count(it->second), 1u) << "missed timer " << it->second << " expiry " << it->first;
      }
    }
    ASSERT_EQ(w.armed_count(), m.size());
    if (op % 64 == 0 || op == ops - 1) {
      for (uint32_t id = 0; id < ids; ++id) {
        ASSERT_EQ(w.Armed(id), m.Armed(id)) << id;
        if (m.Armed(id)) {
          ASSERT_EQ(w.Expiry(id), m.Expiry(id)) << id;
        }
      }
    }
  }
  EXPECT_GT(total_fired, static_cast<size_t>(ops) / 10);
}

TEST(TimerWheelTest, RandomizedAgainstModel) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    RunRandomized(seed, 64, 300, 20000, /*mutate_in_callbacks=*/false);
    if (HasFatalFailure()) {
      return;
    }
  }
}

TEST(TimerWheelTest, RandomizedAgainstModelWithMutatingCallbacks) {
  for (uint64_t seed = 100; seed < 108; ++seed) {
    RunRandomized(seed, seed % 2 ? 16 : 256, 400, 20000, /*mutate_in_callbacks=*/true);
    if (HasFatalFailure()) {
      return;
    }
  }
}

}  // namespace
}  // namespace longlink::core
