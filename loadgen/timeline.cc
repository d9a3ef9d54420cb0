#include "loadgen/timeline.h"

#include <algorithm>

namespace longlink::loadgen {

TimelinePoint MergePoints(const TimelinePoint* p, size_t n) {
  TimelinePoint m = p[n - 1];  // the population at the end of the span
  double k = static_cast<double>(n);
  m.connects = m.logins = m.sent = m.acked = m.delivered = 0;
  m.connect_errors = m.disconnects = m.reconnects = m.protocol_errors = 0;
  m.flaps = m.zombies = m.nat_blackholes = 0;
  m.e2e_p50 = m.e2e_p99 = m.heartbeat_p99 = m.lag_p99 = 0;
  for (size_t i = 0; i < n; ++i) {
    m.connects += p[i].connects / k;
    m.logins += p[i].logins / k;
    m.sent += p[i].sent / k;
    m.acked += p[i].acked / k;
    m.delivered += p[i].delivered / k;
    m.connect_errors += p[i].connect_errors / k;
    m.disconnects += p[i].disconnects / k;
    m.reconnects += p[i].reconnects / k;
    m.protocol_errors += p[i].protocol_errors / k;
    m.flaps += p[i].flaps / k;
    m.zombies += p[i].zombies / k;
    m.nat_blackholes += p[i].nat_blackholes / k;
    // A percentile of the merged span is at least the median of the parts and at most their maximum;
    // the maximum keeps a bad second visible, which is what a chart of a long run is read for.
    m.e2e_p50 = std::max(m.e2e_p50, p[i].e2e_p50);
    m.e2e_p99 = std::max(m.e2e_p99, p[i].e2e_p99);
    m.heartbeat_p99 = std::max(m.heartbeat_p99, p[i].heartbeat_p99);
    m.lag_p99 = std::max(m.lag_p99, p[i].lag_p99);
  }
  return m;
}

void Timeline::Add(const TimelinePoint& p) {
  pending_.push_back(p);
  if (pending_.size() < spacing_) return;
  points_.push_back(MergePoints(pending_.data(), pending_.size()));
  pending_.clear();
  if (points_.size() < kMaxPoints) return;
  std::vector<TimelinePoint> halved;
  halved.reserve(kMaxPoints / 2);
  for (size_t i = 0; i + 1 < points_.size(); i += 2) halved.push_back(MergePoints(&points_[i], 2));
  points_.swap(halved);
  spacing_ *= 2;
}

}  // namespace longlink::loadgen
