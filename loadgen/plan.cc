// Compiling a scenario's phases into join and leave waves and storm events (plan.h says what each kind of
// phase becomes).
#include "loadgen/plan.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "loadgen/scenario.h"

namespace longlink::loadgen {

absl::StatusOr<Plan> CompilePlan(const Scenario& s) {
  Plan plan;
  absl::Duration at = absl::ZeroDuration();
  uint32_t connected = 0;  // clients [0, connected) are connected after the phases compiled so far
  for (const Phase& p : s.phases) {
    const uint64_t at_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(at));
    switch (p.kind) {
      case PhaseKind::kRamp:
        if (p.target > connected) {
          plan.joins.push_back(Wave{connected, static_cast<uint32_t>(p.target) - connected, at_ms, p.connect_rate});
          connected = static_cast<uint32_t>(p.target);
        }
        break;
      case PhaseKind::kHold:
        break;
      case PhaseKind::kSpike:
        // Extra clients above those connected join at the spike's rate and leave together at its end.
        plan.joins.push_back(Wave{connected, static_cast<uint32_t>(p.clients), at_ms, p.connect_rate});
        plan.leaves.push_back(Wave{connected, static_cast<uint32_t>(p.clients),
                                   at_ms + static_cast<uint64_t>(absl::ToInt64Milliseconds(p.duration)), 0,
                                   Leave::kLogout});
        break;
      case PhaseKind::kDrain:
        // The most recently joined clients leave, evenly over the phase, down to the target.
        if (p.target < connected) {
          uint32_t n = connected - static_cast<uint32_t>(p.target);
          plan.leaves.push_back(Wave{static_cast<uint32_t>(p.target), n, at_ms,
                                     n / std::max(0.001, absl::ToDoubleSeconds(p.duration)), p.drop});
          connected = static_cast<uint32_t>(p.target);
        }
        break;
      case PhaseKind::kStorm:
        plan.storms.push_back(StormEvent{at_ms, p.percent / 100.0, p.drop});
        break;
      case PhaseKind::kChurn:
        // Churn is a storm of percent% of the connected clients, chosen afresh, every second of the phase.
        for (int64_t ms = 0; ms < absl::ToInt64Milliseconds(p.duration); ms += 1000) {
          plan.storms.push_back(
              StormEvent{at_ms + static_cast<uint64_t>(ms), p.percent / 100.0, p.drop, /*random=*/true});
        }
        break;
    }
    at += p.duration;
  }
  if (plan.joins.empty()) return absl::InvalidArgumentError("phases: no phase connects any client (add a ramp)");
  return plan;
}

}  // namespace longlink::loadgen
