#include "gateway/backend/local/sync_pacer.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "gtest/gtest.h"

namespace longlink::gateway::local {
namespace {

TEST(SyncPacerTest, BurstThenOnePerSpacing) {
  SyncPacer p(1000, 2);  // two at once, then one per 1,000 ns
  uint64_t retry = 0;
  EXPECT_TRUE(p.TryTake(10'000, &retry));
  EXPECT_TRUE(p.TryTake(10'000, &retry));
  EXPECT_FALSE(p.TryTake(10'000, &retry));
  EXPECT_EQ(retry, 11'000u);
  EXPECT_FALSE(p.TryTake(10'999, &retry));
  EXPECT_TRUE(p.TryTake(11'000, &retry));
  EXPECT_FALSE(p.TryTake(11'500, &retry));
  EXPECT_EQ(retry, 12'000u);
  // After a quiet spell the whole burst is there again, and no more.
  EXPECT_TRUE(p.TryTake(50'000, &retry));
  EXPECT_TRUE(p.TryTake(50'000, &retry));
  EXPECT_FALSE(p.TryTake(50'000, &retry));
}

TEST(SyncPacerTest, ZeroSpacingNeverWaits) {
  SyncPacer p(0, 1);
  uint64_t retry = 0;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(p.TryTake(5, &retry));
}

TEST(SyncPacerTest, ThreadsTogetherStayWithinTheRate) {
  // Four threads take slots as fast as they can for 50 ms: together they get at most the burst plus one
  // per spacing of the time that passed, and the slots do get taken.
  constexpr uint64_t kSpacing = 1'000'000;  // 1 ms
  SyncPacer p(kSpacing, 2);
  std::atomic<uint64_t> taken{0};
  const uint64_t start = core::MonoNanos();
  const uint64_t stop = start + 50 * kSpacing;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      uint64_t retry = 0;
      for (uint64_t now = core::MonoNanos(); now < stop; now = core::MonoNanos()) {
        if (p.TryTake(now, &retry)) taken.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t elapsed = core::MonoNanos() - start;
  EXPECT_LE(taken.load(), 2 + elapsed / kSpacing + 1);
  EXPECT_GE(taken.load(), 2u);
}

}  // namespace
}  // namespace longlink::gateway::local
