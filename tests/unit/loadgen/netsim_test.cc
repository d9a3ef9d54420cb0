#include "loadgen/netsim.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "loadgen/scenario.h"

namespace longlink::loadgen {
namespace {

constexpr uint64_t kMs = 1000000;

std::string Drain(Link& link, LinkParams::Dir d, uint64_t now) {
  std::string out;
  link.Pop(d, now, [&](const uint8_t* p, uint32_t n) { out.append(reinterpret_cast<const char*>(p), n); });
  return out;
}

void PushText(Link& link, LinkParams::Dir d, uint64_t now, const std::string& s) {
  link.Push(d, now, reinterpret_cast<const uint8_t*>(s.data()), static_cast<uint32_t>(s.size()));
}

TEST(DelayLineTest, FifoWithPartialConsumes) {
  DelayLine line;
  EXPECT_TRUE(line.empty());
  EXPECT_EQ(line.front_release(), kNever);
  line.Push(10, reinterpret_cast<const uint8_t*>("abc"), 3);
  line.Push(20, reinterpret_cast<const uint8_t*>("de"), 2);
  EXPECT_EQ(line.front_release(), 10u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(line.front_data()), line.front_len()), "abc");
  line.Consume(2);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(line.front_data()), line.front_len()), "c");
  line.Consume(1);
  EXPECT_EQ(line.front_release(), 20u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(line.front_data()), line.front_len()), "de");
  line.Consume(2);
  EXPECT_TRUE(line.empty());
  line.Consume(5);  // harmless on an empty line
  EXPECT_EQ(line.bytes(), 0u);
}

TEST(DelayLineTest, ManyChunksCompact) {
  DelayLine line;
  std::string expect, got;
  for (int i = 0; i < 10000; ++i) {
    std::string s = std::to_string(i) + ",";
    expect += s;
    line.Push(static_cast<uint64_t>(i), reinterpret_cast<const uint8_t*>(s.data()), static_cast<uint32_t>(s.size()));
    if (i % 3 == 0) {
      got.append(reinterpret_cast<const char*>(line.front_data()), line.front_len());
      line.Consume(line.front_len());
    }
  }
  while (!line.empty()) {
    got.append(reinterpret_cast<const char*>(line.front_data()), line.front_len());
    line.Consume(line.front_len());
  }
  EXPECT_EQ(got, expect);
}

TEST(TokenBucketTest, LimitsToRateAfterBurst) {
  TokenBucket b(100000, 0);  // 100 kB/s: burst 2,000 bytes (20 ms)
  EXPECT_EQ(b.burst(), 2000);
  EXPECT_EQ(b.Take(0, 5000), 2000u);
  EXPECT_EQ(b.Take(0, 10), 0u);
  EXPECT_EQ(b.ReadyAt(0, 100), 1 * kMs);  // 100 bytes at 100 kB/s
  EXPECT_EQ(b.Take(10 * kMs, 5000), 1000u);
  // Over one second at most rate + burst bytes pass.
  uint64_t total = 0;
  for (uint64_t t = 10 * kMs; t <= 1010 * kMs; t += kMs) total += b.Take(t, 100000);
  EXPECT_GE(total, 99000u);
  EXPECT_LE(total, 102000u);
}

TEST(TokenBucketTest, ReadyAtCapsAtBurst) {
  TokenBucket b(1000, 0);  // 1 kB/s: burst 1,500 bytes
  EXPECT_EQ(b.Take(0, 1500), 1500u);
  // A 64 KiB chunk never fits the bucket: ReadyAt waits only for a full burst.
  EXPECT_EQ(b.ReadyAt(0, 65536), 1500 * kMs);
}

TEST(LinkTest, LatencyDelaysEachDirection) {
  LinkParams p;
  p.latency_ns[LinkParams::kUp] = 50 * kMs;
  p.latency_ns[LinkParams::kDown] = 20 * kMs;
  Link link(&p, 0, 1);
  PushText(link, LinkParams::kUp, 0, "up");
  PushText(link, LinkParams::kDown, 0, "down");
  EXPECT_EQ(link.NextDue(0), 20 * kMs);
  EXPECT_EQ(Drain(link, LinkParams::kUp, 49 * kMs), "");
  EXPECT_EQ(Drain(link, LinkParams::kDown, 19 * kMs), "");
  EXPECT_EQ(Drain(link, LinkParams::kDown, 20 * kMs), "down");
  EXPECT_EQ(link.NextDue(20 * kMs), 50 * kMs);
  EXPECT_EQ(Drain(link, LinkParams::kUp, 50 * kMs), "up");
  EXPECT_EQ(link.NextDue(50 * kMs), kNever);
  EXPECT_FALSE(link.Pending());
}

TEST(LinkTest, JitterNeverReorders) {
  LinkParams p;
  p.latency_ns[LinkParams::kUp] = 100 * kMs;
  p.jitter_ns[LinkParams::kUp] = 90 * kMs;
  Link link(&p, 0, 7);
  std::string expect;
  uint64_t min_delay = kNever, max_delay = 0;
  for (int i = 0; i < 200; ++i) {
    std::string s = std::to_string(i) + ";";
    expect += s;
    PushText(link, LinkParams::kUp, static_cast<uint64_t>(i) * kMs, s);
  }
  std::string got;
  for (uint64_t t = 0; t < 600 * kMs; t += kMs) got += Drain(link, LinkParams::kUp, t);
  EXPECT_EQ(got, expect);
  // Jitter did spread the delays: the first byte cannot leave before 10 ms, and not all at 100 ms.
  LinkParams q = p;
  Link probe(&q, 0, 9);
  for (int i = 0; i < 100; ++i) {
    uint64_t t0 = static_cast<uint64_t>(i) * 1000 * kMs;  // far apart: no ordering constraint
    PushText(probe, LinkParams::kUp, t0, "x");
    uint64_t due = probe.NextDue(t0);
    min_delay = std::min(min_delay, due - t0);
    max_delay = std::max(max_delay, due - t0);
    Drain(probe, LinkParams::kUp, due);
  }
  EXPECT_GE(min_delay, 10 * kMs);
  EXPECT_LE(max_delay, 190 * kMs);
  EXPECT_GT(max_delay - min_delay, 50 * kMs);
}

TEST(LinkTest, BandwidthCapsThroughput) {
  LinkParams p;
  p.bandwidth[LinkParams::kDown] = 10000;  // 10 kB/s
  Link link(&p, 0, 3);
  std::string big(30000, 'z');
  PushText(link, LinkParams::kDown, 0, big);
  size_t got = 0;
  uint64_t t = 0;
  uint64_t done_at = 0;
  while (got < big.size() && t < 10000 * kMs) {
    got += Drain(link, LinkParams::kDown, t).size();
    if (got == big.size()) done_at = t;
    uint64_t due = link.NextDue(t);
    t = due == kNever ? t + kMs : std::max(due, t + 1);
  }
  ASSERT_EQ(got, big.size());
  // 30,000 bytes at 10 kB/s with a 1,500-byte burst: about 2.85 s.
  EXPECT_GE(done_at, 2800 * kMs);
  EXPECT_LE(done_at, 2950 * kMs);
}

TEST(LinkTest, StallsHoldEverything) {
  LinkParams p;
  p.stalls_per_s = 1000;  // a stall starts almost at once
  p.stall_ns = 300 * kMs;
  Link link(&p, 0, 11);
  PushText(link, LinkParams::kUp, 10 * kMs, "a");
  EXPECT_TRUE(link.Stalled(10 * kMs));
  EXPECT_EQ(Drain(link, LinkParams::kUp, 10 * kMs), "");
  uint64_t due = link.NextDue(10 * kMs);
  EXPECT_GT(due, 10 * kMs);
  EXPECT_GE(link.stalls(), 1u);
}

TEST(LinkTest, NatTimeoutBlackHolesSilently) {
  LinkParams p;
  p.nat_idle_ns = 1000 * kMs;
  Link link(&p, 0, 5);
  PushText(link, LinkParams::kUp, 900 * kMs, "ok");  // within the idle limit
  EXPECT_EQ(Drain(link, LinkParams::kUp, 900 * kMs), "ok");
  EXPECT_FALSE(link.dead());
  PushText(link, LinkParams::kDown, 2500 * kMs, "late");  // 1.6 s of silence: the mapping is gone
  EXPECT_TRUE(link.nat_dead());
  EXPECT_EQ(Drain(link, LinkParams::kDown, 2500 * kMs), "");
  PushText(link, LinkParams::kUp, 2501 * kMs, "lost");
  EXPECT_EQ(Drain(link, LinkParams::kUp, 2501 * kMs), "");
  link.Reset(3000 * kMs);  // a new connection gets a new mapping
  EXPECT_FALSE(link.dead());
  PushText(link, LinkParams::kUp, 3000 * kMs, "new");
  EXPECT_EQ(Drain(link, LinkParams::kUp, 3000 * kMs), "new");
}

TEST(LinkTest, ZombieDropsBothWays) {
  LinkParams p;
  p.latency_ns[LinkParams::kUp] = 10 * kMs;
  Link link(&p, 0, 5);
  PushText(link, LinkParams::kUp, 0, "queued");
  link.BecomeZombie(5 * kMs);
  EXPECT_TRUE(link.zombie());
  EXPECT_EQ(link.zombie_since(), 5 * kMs);
  EXPECT_EQ(Drain(link, LinkParams::kUp, 20 * kMs), "");
  PushText(link, LinkParams::kDown, 21 * kMs, "x");
  EXPECT_EQ(Drain(link, LinkParams::kDown, 21 * kMs), "");
  EXPECT_EQ(link.NextDue(21 * kMs), kNever);
}

TEST(LinkTest, EventRatesMatchTheProfile) {
  LinkParams p;
  p.flaps_per_s = 2;
  Link link(&p, 0, 42);
  double sum = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    link.DrawFlap(0);
    sum += static_cast<double>(link.next_flap()) / 1e9;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.02);  // mean of an exponential with rate 2/s
  LinkParams none;
  Link quiet(&none, 0, 42);
  EXPECT_EQ(quiet.next_flap(), kNever);
  EXPECT_EQ(quiet.next_zombie(), kNever);
}

TEST(LinkTest, SameSeedSameBehaviour) {
  LinkParams p;
  p.latency_ns[LinkParams::kUp] = 100 * kMs;
  p.jitter_ns[LinkParams::kUp] = 50 * kMs;
  p.flaps_per_s = 0.1;
  Link a(&p, 0, 99), b(&p, 0, 99), c(&p, 0, 100);
  EXPECT_EQ(a.next_flap(), b.next_flap());
  EXPECT_NE(a.next_flap(), c.next_flap());
  PushText(a, LinkParams::kUp, 0, "x");
  PushText(b, LinkParams::kUp, 0, "x");
  EXPECT_EQ(a.NextDue(0), b.NextDue(0));
}

TEST(LinkParamsTest, FromBuiltinProfiles) {
  const NetworkProfile* gprs = FindBuiltinProfile("gprs");
  ASSERT_NE(gprs, nullptr);
  LinkParams p = LinkParams::From(*gprs);
  EXPECT_TRUE(p.Any());
  EXPECT_EQ(p.latency_ns[LinkParams::kUp], static_cast<uint64_t>(absl::ToInt64Nanoseconds(gprs->latency_up)));
  EXPECT_EQ(p.bandwidth[LinkParams::kDown], gprs->bandwidth_down);
  EXPECT_NEAR(p.flaps_per_s * 3600, gprs->flaps_per_hour, 1e-9);
  EXPECT_LE(p.jitter_ns[LinkParams::kUp], p.latency_ns[LinkParams::kUp]);
  EXPECT_FALSE(LinkParams::From(*FindBuiltinProfile("none")).Any());
}

}  // namespace
}  // namespace longlink::loadgen
