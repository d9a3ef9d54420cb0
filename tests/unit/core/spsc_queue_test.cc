#include "core/spsc_queue.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace longlink::core {
namespace {

TEST(SpscQueueTest, CapacityRoundsUpToPowerOfTwo) {
  EXPECT_EQ(SpscQueue<int>(0).capacity(), 1u);
  EXPECT_EQ(SpscQueue<int>(1).capacity(), 1u);
  EXPECT_EQ(SpscQueue<int>(5).capacity(), 8u);
  EXPECT_EQ(SpscQueue<int>(8).capacity(), 8u);
  EXPECT_EQ(SpscQueue<int>(1000).capacity(), 1024u);
}

TEST(SpscQueueTest, Fifo) {
  SpscQueue<int> q(8);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(q.TryPush(i));
  }
  EXPECT_EQ(q.SizeApprox(), 5u);
  for (int i = 1; i <= 5; ++i) {
    int v = 0;
    ASSERT_TRUE(q.TryPop(&v));
    EXPECT_EQ(v, i);
  }
  EXPECT_EQ(q.SizeApprox(), 0u);
}

TEST(SpscQueueTest, FullAndEmpty) {
  SpscQueue<uint64_t> q(4);
  uint64_t v = 0;
  EXPECT_FALSE(q.TryPop(&v));
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(q.TryPush(i));
  }
  EXPECT_FALSE(q.TryPush(99));
  EXPECT_EQ(q.SizeApprox(), 4u);
  ASSERT_TRUE(q.TryPop(&v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(q.TryPush(4));
  EXPECT_FALSE(q.TryPush(5));
  for (uint64_t i = 1; i <= 4; ++i) {
    ASSERT_TRUE(q.TryPop(&v));
    EXPECT_EQ(v, i);
  }
  EXPECT_FALSE(q.TryPop(&v));
}

TEST(SpscQueueTest, CapacityOne) {
  SpscQueue<int> q(1);
  int v = 0;
  ASSERT_TRUE(q.TryPush(7));
  EXPECT_FALSE(q.TryPush(8));
  ASSERT_TRUE(q.TryPop(&v));
  EXPECT_EQ(v, 7);
  EXPECT_FALSE(q.TryPop(&v));
}

TEST(SpscQueueTest, WrapsAroundManyTimes) {
  SpscQueue<uint32_t> q(4);
  uint32_t next_in = 0;
  uint32_t next_out = 0;
  for (int round = 0; round < 1000; ++round) {
    const int n = 1 + round % 4;
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(q.TryPush(next_in++));
    }
    EXPECT_EQ(q.SizeApprox(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      uint32_t v = 0;
      ASSERT_TRUE(q.TryPop(&v));
      ASSERT_EQ(v, next_out++);
    }
  }
}

TEST(SpscQueueTest, PopBatch) {
  SpscQueue<int> q(8);
  int out[16] = {};
  EXPECT_EQ(q.PopBatch(out, 16), 0u);

  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(q.TryPush(i));
  }
  EXPECT_EQ(q.PopBatch(out, 0), 0u);
  ASSERT_EQ(q.PopBatch(out, 4), 4u);
  EXPECT_EQ(out[0], 0);
  EXPECT_EQ(out[3], 3);

  // Positions 6, 7 then 0..3 of the ring: the batch wraps past the end.
  for (int i = 6; i < 12; ++i) {
    ASSERT_TRUE(q.TryPush(i));
  }
  EXPECT_FALSE(q.TryPush(12));
  ASSERT_EQ(q.PopBatch(out, 16), 8u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(out[i], 4 + i);
  }
  EXPECT_EQ(q.PopBatch(out, 16), 0u);
}

TEST(SpscQueueTest, MixedPopAndPopBatch) {
  SpscQueue<int> q(16);
  int next_in = 0;
  int next_out = 0;
  for (int round = 0; round < 500; ++round) {
    while (q.TryPush(next_in)) {
      ++next_in;
    }
    int v = 0;
    ASSERT_TRUE(q.TryPop(&v));
    ASSERT_EQ(v, next_out++);
    int out[5];
    const size_t n = q.PopBatch(out, 5);
    ASSERT_EQ(n, 5u);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(out[i], next_out++);
    }
  }
}

struct Message {
  uint32_t conn;
  uint16_t kind;
  uint64_t seq;
  char tag[6];
};

TEST(SpscQueueTest, CarriesStructs) {
  SpscQueue<Message> q(4);
  ASSERT_TRUE(q.TryPush(Message{3, 7, 1ull << 40, "abcde"}));
  Message m{};
  ASSERT_TRUE(q.TryPop(&m));
  EXPECT_EQ(m.conn, 3u);
  EXPECT_EQ(m.kind, 7u);
  EXPECT_EQ(m.seq, 1ull << 40);
  EXPECT_STREQ(m.tag, "abcde");
}

// Pushes 10 million sequence numbers through a small ring from another thread; the consumer, mixing
// single pops and batches, must see each exactly once and in order.
TEST(SpscQueueTest, TwoThreadStress) {
  constexpr uint64_t kCount = 10'000'000;
  SpscQueue<uint64_t> q(1024);
  std::thread producer([&] {
    for (uint64_t i = 0; i < kCount;) {
      if (q.TryPush(i)) {
        ++i;
      } else {
        // The machine may have fewer free cores than threads; let the consumer run.
        std::this_thread::yield();
      }
    }
  });

  uint64_t expected = 0;
  uint64_t mismatches = 0;
  uint64_t batch[64];
  while (expected < kCount) {
    size_t n = 0;
    if (expected % 3 == 0) {
      n = q.PopBatch(batch, 1 + expected % 64);
    } else if (q.TryPop(&batch[0])) {
      n = 1;
    }
    if (n == 0) {
      std::this_thread::yield();
      continue;
    }
    for (size_t i = 0; i < n; ++i) {
      mismatches += batch[i] != expected;
      ++expected;
    }
  }
  producer.join();
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(expected, kCount);
  uint64_t v = 0;
  EXPECT_FALSE(q.TryPop(&v));
  EXPECT_EQ(q.SizeApprox(), 0u);
}

}  // namespace
}  // namespace longlink::core
