// The plan of a run: a scenario's phases compiled into what the engine acts on, client index ranges that
// join or leave at a rate from a given time (waves) and moments when part of the logged-in clients is
// dropped at once (storm events). Phases speak of populations ("ramp to 800", "drain to 100"); the engine
// speaks of individual clients and times, and this is the one place that turns the one into the other, as
// a pure function that tests can check against hand-computed times and counts.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "loadgen/vocabulary.h"

namespace longlink::loadgen {

struct Scenario;

// Clients [first, first + count) connect (a join wave) or leave without reconnecting (a leave wave),
// starting start_ms into the run, `rate` per second in index order (0: all at once). Ramps and spikes are
// join waves; drains and the end of a spike are leave waves. A client that left joins again if a later
// join wave covers it.
struct Wave {
  uint32_t first = 0;
  uint32_t count = 0;
  uint64_t start_ms = 0;
  double rate = 0;
  Leave leave = Leave::kLogout;  // leave waves only
};

// At at_ms into the run, about `fraction` of the logged-in clients are dropped at once, the way `leave` says,
// and reconnect with backoff. A storm phase is one event whose cohort is picked by a hash of the client
// index, so it is the same clients whatever the shard count; a churn phase is one event per second of the
// phase, each with a fresh random cohort (`random`). Events due after the run's duration are skipped.
struct StormEvent {
  uint64_t at_ms = 0;
  double fraction = 0;
  Leave leave = Leave::kClose;
  bool random = false;
};

struct Plan {
  std::vector<Wave> joins;
  std::vector<Wave> leaves;
  std::vector<StormEvent> storms;
};

// Phases run back to back from the start of the run, and connected clients are always the lowest indexes:
//   ramp  one join wave of the clients between those connected and its target, at its connect_rate;
//   hold  nothing;
//   spike a join wave of `clients` more above those connected, at its connect_rate, and a leave wave of the
//         same clients, all at once (LOGOUT), at the end of the phase;
//   drain a leave wave of the most recently joined clients down to its target, spread evenly over the
//         phase, leaving the way its `drop` says;
//   storm one storm event of percent% at the start of the phase;
//   churn one random storm event of percent% at each whole second of the phase (0s, 1s, ... < duration).
// Fails when no phase connects any client. `scenario` is a validated one (Validate()).
absl::StatusOr<Plan> CompilePlan(const Scenario& scenario);

}  // namespace longlink::loadgen
