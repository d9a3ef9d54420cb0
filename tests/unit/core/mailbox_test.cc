#include "core/mailbox.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

namespace longlink::core {
namespace {

// The shard's side, without io_uring: wait for the eventfd, read it, take and run the calls. Returns how
// many ran, or -1 if no wake-up came within the timeout. A wake-up may find nothing: a call posted between
// TakeAll clearing the flag and taking the queue is taken at once and still writes the eventfd.
int RunOnce(Mailbox& mb, int timeout_ms) {
  pollfd p{mb.fd(), POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return -1;
  uint64_t v;
  EXPECT_EQ(read(mb.fd(), &v, sizeof(v)), static_cast<ssize_t>(sizeof(v)));
  std::vector<Mailbox::Call> calls;
  mb.TakeAll(&calls);
  for (Mailbox::Call& c : calls) std::move(c)();
  return static_cast<int>(calls.size());
}

TEST(MailboxTest, CallsRunOnTheConsumerInOrderPerProducer) {
  Mailbox mb;
  ASSERT_TRUE(mb.Init().ok());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::vector<int>> seen(kThreads);
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) ASSERT_TRUE(mb.Post([&seen, t, i] { seen[t].push_back(i); }));
    });
  }
  int ran = 0;
  bool stuck = false;
  while (ran < kThreads * kPerThread) {
    int n = RunOnce(mb, 5000);
    if (n < 0) {
      stuck = true;  // calls are queued and no wake-up came
      break;
    }
    ran += n;
  }
  for (auto& p : producers) p.join();
  ASSERT_FALSE(stuck) << "a posted call never woke the consumer; " << ran << " ran";
  EXPECT_LE(RunOnce(mb, 0), 0) << "nothing is left";
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i);
  }
}

TEST(MailboxTest, ABurstWritesTheEventfdOnce) {
  Mailbox mb;
  ASSERT_TRUE(mb.Init().ok());
  int n = 0;
  for (int i = 0; i < 1000; ++i) mb.Post([&n] { ++n; });
  uint64_t v = 0;
  ASSERT_EQ(read(mb.fd(), &v, sizeof(v)), static_cast<ssize_t>(sizeof(v)));
  EXPECT_EQ(v, 1u);
  std::vector<Mailbox::Call> calls;
  mb.TakeAll(&calls);
  for (Mailbox::Call& c : calls) std::move(c)();
  EXPECT_EQ(n, 1000);
  // Once taken, the next post wakes again.
  mb.Post([&n] { ++n; });
  EXPECT_EQ(RunOnce(mb, 1000), 1);
  EXPECT_EQ(n, 1001);
}

TEST(MailboxTest, ClosedMailboxRefusesAndDropsWithoutRunning) {
  Mailbox mb;
  ASSERT_TRUE(mb.Init().ok());
  bool ran = false;
  auto token = std::make_shared<int>(1);
  mb.Post([&ran, token] { ran = true; });
  EXPECT_EQ(token.use_count(), 2);
  mb.Close();
  EXPECT_EQ(token.use_count(), 1);  // the queued call was destroyed, not run
  EXPECT_FALSE(mb.Post([&ran] { ran = true; }));
  std::vector<Mailbox::Call> calls;
  mb.TakeAll(&calls);
  EXPECT_TRUE(calls.empty());
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace longlink::core
