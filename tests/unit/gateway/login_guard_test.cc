#include "gateway/login_guard.h"

#include <gtest/gtest.h>

namespace longlink::gateway {
namespace {

PeerAddress V4(uint8_t last) {
  PeerAddress a;
  a.bytes[10] = a.bytes[11] = 0xff;
  a.bytes[12] = 10;
  a.bytes[15] = last;
  return a;
}

TEST(LoginGuardTest, BlocksAnAddressPastItsFailuresForTheBlockTime) {
  LoginGuard g(LoginGuard::Options{3, 60000, 5000, 100});
  uint64_t t = 1000000;
  EXPECT_FALSE(g.active(t));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(g.Failed(V4(1), t + i));
  EXPECT_FALSE(g.Blocked(V4(1), t + 3));
  EXPECT_TRUE(g.Failed(V4(1), t + 3)) << "the fourth failure within the window blocks";
  EXPECT_TRUE(g.Blocked(V4(1), t + 4));
  EXPECT_FALSE(g.Blocked(V4(2), t + 4)) << "other addresses are not affected";
  EXPECT_TRUE(g.active(t + 4));
  EXPECT_EQ(g.blocked(t + 4), 1u);
  EXPECT_FALSE(g.Failed(V4(1), t + 5)) << "already blocked: not blocked again";
  EXPECT_TRUE(g.Blocked(V4(1), t + 3 + 4999));
  EXPECT_FALSE(g.Blocked(V4(1), t + 3 + 5000));
  EXPECT_FALSE(g.active(t + 3 + 5000));
}

TEST(LoginGuardTest, FailuresOfAnOldWindowDoNotCount) {
  LoginGuard g(LoginGuard::Options{2, 1000, 5000, 100});
  EXPECT_FALSE(g.Failed(V4(1), 0));
  EXPECT_FALSE(g.Failed(V4(1), 500));
  EXPECT_FALSE(g.Failed(V4(1), 1500)) << "a new window started";
  EXPECT_FALSE(g.Failed(V4(1), 1600));
  EXPECT_TRUE(g.Failed(V4(1), 1700));
}

TEST(LoginGuardTest, ZeroMeansOffAndTheTableIsBounded) {
  LoginGuard off(LoginGuard::Options{0, 1000, 1000, 10});
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(off.Failed(V4(1), i));
  EXPECT_EQ(off.tracked(), 0u);
  LoginGuard g(LoginGuard::Options{1, 60000, 60000, 10});
  EXPECT_FALSE(g.Failed(V4(0), 0));
  EXPECT_TRUE(g.Failed(V4(0), 1));  // blocked: kept while the table churns
  for (uint8_t i = 1; i < 200; ++i) g.Failed(V4(i), 10 + i);
  EXPECT_LE(g.tracked(), 10u);
  EXPECT_TRUE(g.Blocked(V4(0), 300));
  // Very many addresses, every one blocked: the table still stays within its size.
  LoginGuard all(LoginGuard::Options{1, 60000, 60000, 10});
  for (uint8_t i = 0; i < 200; ++i) {
    all.Failed(V4(i), 1000 + i);
    all.Failed(V4(i), 1000 + i);
  }
  EXPECT_LE(all.tracked(), 10u);
  EXPECT_TRUE(all.Blocked(V4(199), 1300)) << "the newest blocks are the ones kept";
}

}  // namespace
}  // namespace longlink::gateway
