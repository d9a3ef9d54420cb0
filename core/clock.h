// Clocks used across shards: one monotonic clock for durations and deadlines (shared by every thread of a
// process, so a loadgen sender and receiver measure end-to-end latency on the same clock), and wall time
// for protocol timestamps.
#pragma once

#include <time.h>

#include <cstdint>

namespace longlink::core {

inline uint64_t MonoNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
inline uint64_t MonoMillis() { return MonoNanos() / 1000000ull; }

inline uint64_t UnixNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline uint64_t UnixMillis() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000ull + static_cast<uint64_t>(ts.tv_nsec) / 1000000ull;
}

}  // namespace longlink::core
