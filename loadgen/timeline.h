// The run over time, one point a second, for the HTML report's charts: the population against its target,
// the rates of connects, logins, messages and trouble, and the latency percentiles of each second.
//
// Bounded for long runs: past kMaxPoints, neighbouring points are merged in pairs (rates averaged, the
// population and percentiles kept as their later / larger value) and the spacing doubles, so a week-long
// soak keeps at most kMaxPoints points.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace longlink::loadgen {

struct TimelinePoint {
  double t_s = 0;  // since the run started
  double target = 0;
  double online = 0;
  double connected = 0;
  // per second over the interval that ends at t_s
  double connects = 0, logins = 0, sent = 0, acked = 0, delivered = 0;
  double connect_errors = 0, disconnects = 0, reconnects = 0, protocol_errors = 0;
  double flaps = 0, zombies = 0, nat_blackholes = 0;
  // milliseconds, over the interval (0 when nothing was measured in it)
  double e2e_p50 = 0, e2e_p99 = 0, heartbeat_p99 = 0, lag_p99 = 0;
};

class Timeline {
 public:
  static constexpr size_t kMaxPoints = 2048;

  void Add(const TimelinePoint& p);
  const std::vector<TimelinePoint>& points() const { return points_; }
  // Seconds between points now (1, then 2, 4, ... after each halving).
  uint32_t spacing_s() const { return spacing_; }

 private:
  std::vector<TimelinePoint> points_;
  uint32_t spacing_ = 1;
  // Points are added a second apart; after a halving, every `spacing_` of them are merged into one.
  std::vector<TimelinePoint> pending_;
};

// Merges consecutive points into one (exposed for tests).
TimelinePoint MergePoints(const TimelinePoint* first, size_t n);

}  // namespace longlink::loadgen
