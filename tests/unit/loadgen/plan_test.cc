#include "loadgen/plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "loadgen/scenario.h"

namespace longlink::loadgen {
namespace {

// A scenario of `clients` clients with these phases; checked by Validate(), as CompilePlan expects.
Scenario With(uint64_t clients, std::vector<Phase> phases) {
  Scenario s;
  s.target.addresses = {Endpoint{"127.0.0.1", 7000}};
  s.clients = clients;
  s.phases = std::move(phases);
  absl::Status valid = Validate(s);
  EXPECT_TRUE(valid.ok()) << valid;
  return s;
}

Phase Ramp(uint64_t target, double rate, absl::Duration d) {
  Phase p;
  p.kind = PhaseKind::kRamp;
  p.target = target;
  p.connect_rate = rate;
  p.duration = d;
  return p;
}

Phase Hold(absl::Duration d) {
  Phase p;
  p.kind = PhaseKind::kHold;
  p.duration = d;
  return p;
}

Phase Spike(uint64_t clients, double rate, absl::Duration d) {
  Phase p;
  p.kind = PhaseKind::kSpike;
  p.clients = clients;
  p.connect_rate = rate;
  p.duration = d;
  return p;
}

Phase Drop(PhaseKind kind, double percent, Leave drop, absl::Duration d) {
  Phase p;
  p.kind = kind;
  p.percent = percent;
  p.drop = drop;
  p.duration = d;
  return p;
}

Phase Drain(uint64_t target, Leave drop, absl::Duration d) {
  Phase p;
  p.kind = PhaseKind::kDrain;
  p.target = target;
  p.drop = drop;
  p.duration = d;
  return p;
}

void ExpectWave(const Wave& w, uint32_t first, uint32_t count, uint64_t start_ms, double rate, Leave leave) {
  EXPECT_EQ(w.first, first);
  EXPECT_EQ(w.count, count);
  EXPECT_EQ(w.start_ms, start_ms);
  EXPECT_DOUBLE_EQ(w.rate, rate);
  EXPECT_EQ(w.leave, leave);
}

void ExpectStorm(const StormEvent& e, uint64_t at_ms, double fraction, Leave leave, bool random) {
  EXPECT_EQ(e.at_ms, at_ms);
  EXPECT_DOUBLE_EQ(e.fraction, fraction);
  EXPECT_EQ(e.leave, leave);
  EXPECT_EQ(e.random, random);
}

TEST(PlanTest, RampHoldDrain) {
  // ramp 0..800 at 200/s over 4s; hold 10s; drain 800 -> 300 over 5s: 500 leave at 100/s from 14s.
  absl::StatusOr<Plan> plan = CompilePlan(With(
      1000, {Ramp(800, 200, absl::Seconds(4)), Hold(absl::Seconds(10)), Drain(300, Leave::kClose, absl::Seconds(5))}));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->joins.size(), 1u);
  ExpectWave(plan->joins[0], 0, 800, 0, 200, Leave::kLogout);
  ASSERT_EQ(plan->leaves.size(), 1u);
  ExpectWave(plan->leaves[0], 300, 500, 14000, 100, Leave::kClose);
  EXPECT_TRUE(plan->storms.empty());
}

TEST(PlanTest, RampsContinueFromThoseConnected) {
  // 0..100 at 50/s (2s), then 100..250 at 30/s (5s) from 2s; a ramp to the same target adds nothing but
  // still takes its time, so the next ramp (250..400 at 75/s) starts at 2 + 5 + 1 = 8s.
  absl::StatusOr<Plan> plan =
      CompilePlan(With(400, {Ramp(100, 50, absl::Seconds(2)), Ramp(250, 30, absl::Seconds(5)),
                             Ramp(250, 30, absl::Seconds(1)), Ramp(400, 75, absl::Seconds(2))}));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->joins.size(), 3u);
  ExpectWave(plan->joins[0], 0, 100, 0, 50, Leave::kLogout);
  ExpectWave(plan->joins[1], 100, 150, 2000, 30, Leave::kLogout);
  ExpectWave(plan->joins[2], 250, 150, 8000, 75, Leave::kLogout);
  EXPECT_TRUE(plan->leaves.empty());
  EXPECT_TRUE(plan->storms.empty());
}

TEST(PlanTest, SpikeJoinsAboveTheConnectedAndLeavesAtItsEnd) {
  // ramp 0..100 (1s); spike of 50 at 25/s for 4s from 1s: they join as clients 100..149 and all log out at
  // 5s; hold 2s; storm of 30% with RST at 7s; then a drain to 40 over 3s from 8s takes the ramp's clients
  // 40..99 (the spike's are gone): 60 at 20/s, with LOGOUT.
  absl::StatusOr<Plan> plan =
      CompilePlan(With(200, {Ramp(100, 100, absl::Seconds(1)), Spike(50, 25, absl::Seconds(4)), Hold(absl::Seconds(2)),
                             Drop(PhaseKind::kStorm, 30, Leave::kReset, absl::Seconds(1)),
                             Drain(40, Leave::kLogout, absl::Seconds(3))}));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->joins.size(), 2u);
  ExpectWave(plan->joins[0], 0, 100, 0, 100, Leave::kLogout);
  ExpectWave(plan->joins[1], 100, 50, 1000, 25, Leave::kLogout);
  ASSERT_EQ(plan->leaves.size(), 2u);
  ExpectWave(plan->leaves[0], 100, 50, 5000, 0, Leave::kLogout);
  ExpectWave(plan->leaves[1], 40, 60, 8000, 20, Leave::kLogout);
  ASSERT_EQ(plan->storms.size(), 1u);
  ExpectStorm(plan->storms[0], 7000, 0.3, Leave::kReset, /*random=*/false);
}

TEST(PlanTest, ChurnIsOneRandomStormPerWholeSecond) {
  // ramp 0..10 (1s); churn of 5% with LOGOUT for 2.5s from 1s: events at 1s, 2s and 3s (offsets 0, 1 and
  // 2 s are below 2.5 s; 3 s is not); then churn of 12.5% with close for exactly 2s from 3.5s: 3.5s and 4.5s.
  absl::StatusOr<Plan> plan = CompilePlan(
      With(10, {Ramp(10, 10, absl::Seconds(1)), Drop(PhaseKind::kChurn, 5, Leave::kLogout, absl::Milliseconds(2500)),
                Drop(PhaseKind::kChurn, 12.5, Leave::kClose, absl::Seconds(2))}));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->joins.size(), 1u);
  EXPECT_TRUE(plan->leaves.empty());
  ASSERT_EQ(plan->storms.size(), 5u);
  ExpectStorm(plan->storms[0], 1000, 0.05, Leave::kLogout, /*random=*/true);
  ExpectStorm(plan->storms[1], 2000, 0.05, Leave::kLogout, /*random=*/true);
  ExpectStorm(plan->storms[2], 3000, 0.05, Leave::kLogout, /*random=*/true);
  ExpectStorm(plan->storms[3], 3500, 0.125, Leave::kClose, /*random=*/true);
  ExpectStorm(plan->storms[4], 4500, 0.125, Leave::kClose, /*random=*/true);
}

TEST(PlanTest, DrainToTheConnectedCountIsNoWave) {
  absl::StatusOr<Plan> plan =
      CompilePlan(With(50, {Ramp(50, 50, absl::Seconds(1)), Drain(50, Leave::kReset, absl::Seconds(2)),
                            Drain(10, Leave::kReset, absl::Seconds(4))}));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->leaves.size(), 1u);
  // 40 clients over 4 s from 1 + 2 = 3 s.
  ExpectWave(plan->leaves[0], 10, 40, 3000, 10, Leave::kReset);
}

TEST(PlanTest, NothingConnectsIsAnError) {
  absl::StatusOr<Plan> plan =
      CompilePlan(With(10, {Hold(absl::Seconds(5)), Drop(PhaseKind::kStorm, 50, Leave::kReset, absl::Seconds(1))}));
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message(), "phases: no phase connects any client (add a ramp)");
}

TEST(PlanTest, FromAFileWithTheDefaultsResolved) {
  // The ramp's target (all 100 clients) and duration (100 at 50/s: 2s) and each phase's default way of
  // leaving (storm: reset, churn: close, drain: logout) come from the loader.
  absl::StatusOr<Scenario> s = LoadScenario(R"(target:
  addresses: [127.0.0.1:7000]
clients: 100
connect_rate: 50
phases:
  - kind: ramp
  - {kind: storm, duration: 3s, percent: 20}
  - {kind: churn, duration: 2s, percent: 1}
  - {kind: drain, duration: 4s, target: 20}
)",
                                            "plan.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<Plan> plan = CompilePlan(*s);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->joins.size(), 1u);
  ExpectWave(plan->joins[0], 0, 100, 0, 50, Leave::kLogout);
  ASSERT_EQ(plan->storms.size(), 3u);
  ExpectStorm(plan->storms[0], 2000, 0.2, Leave::kReset, /*random=*/false);
  ExpectStorm(plan->storms[1], 5000, 0.01, Leave::kClose, /*random=*/true);
  ExpectStorm(plan->storms[2], 6000, 0.01, Leave::kClose, /*random=*/true);
  ASSERT_EQ(plan->leaves.size(), 1u);
  // 80 clients over 4 s from 2 + 3 + 2 = 7 s.
  ExpectWave(plan->leaves[0], 20, 80, 7000, 20, Leave::kLogout);
}

}  // namespace
}  // namespace longlink::loadgen
