// Per-shard gateway statistics. Declared once as sorted macro lists; the collector in gateway/server.cc
// turns each entry into a longlink_gateway_<name> family and sums the shards at scrape time.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "metrics/metrics.h"
#include "protocol/frame.h"

namespace longlink::gateway {

// Why a connection closed: the `reason` label of longlink_gateway_closes_total.
#define LONGLINK_CLOSE_REASONS(R) \
  R(auth_failed)                  \
  R(bad_frame)                    \
  R(draining)                     \
  R(frame_too_large)              \
  R(heartbeat_timeout)            \
  R(kicked)                       \
  R(login_rejected)               \
  R(login_timeout)                \
  R(logout)                       \
  R(malformed_body)               \
  R(migrate_failed)               \
  R(not_logged_in)                \
  R(peer_closed)                  \
  R(read_error)                   \
  R(slow_consumer)                \
  R(write_error)                  \
  R(write_timeout)

enum class CloseReason : uint8_t {
#define LL_ENUM_(n) k_##n,
  LONGLINK_CLOSE_REASONS(LL_ENUM_)
#undef LL_ENUM_
      kCount
};
std::string_view CloseReasonName(CloseReason r);

#define LONGLINK_GATEWAY_COUNTERS(C)                                                                  \
  C(accept_errors_total, "Accept completions that failed (other than a full fixed-file table)")      \
  C(accepts_total, "Connections accepted")                                                           \
  C(buffer_ring_exhausted_total, "Receives that found the shard's buffer ring empty (-ENOBUFS)")     \
  C(cross_shard_messages_total, "Messages posted to other shards")                                   \
  C(cross_shard_overflow_total, "Cross-shard posts that found the queue full and waited locally")    \
  C(fixed_table_full_total, "Times accept paused because the shard's fixed-file table was full")     \
  C(heartbeat_timeouts_total, "Connections closed for missing heartbeats")                           \
  C(kicks_total, "Sessions kicked (duplicate device login or by request)")                           \
  C(login_failures_total, "Login attempts rejected (bad token, malformed login, backend denial)")    \
  C(logins_total, "Successful logins")                                                               \
  C(migrations_total, "Connections moved to their user's owner shard at login")                      \
  C(received_bytes_total, "Bytes received from clients")                                             \
  C(sent_bytes_total, "Bytes sent to clients")                                                       \
  C(slow_consumers_total, "Connections closed because their output queue passed --max-pending-bytes") \
  C(stale_completions_total, "Completions dropped because their connection was closed and reused")   \
  C(write_timeouts_total, "Connections closed because a send made no progress in time")

struct ShardStats {
#define LL_COUNTER_(name, help) metrics::Counter name;
  LONGLINK_GATEWAY_COUNTERS(LL_COUNTER_)
#undef LL_COUNTER_
  std::array<metrics::Counter, static_cast<size_t>(CloseReason::kCount)> closes;
  // Index = opcode; 0 collects unknown opcodes.
  std::array<metrics::Counter, protocol::kMaxOpcode + 1> frames_in;
  std::array<metrics::Counter, protocol::kMaxOpcode + 1> frames_out;
  metrics::Gauge connections;           // accepted and not yet closed
  metrics::Gauge sessions;              // logged in
  metrics::Gauge pending_send_bytes;    // bytes in output queues
  metrics::Gauge ring_mode;             // core::RingMode
  metrics::Gauge recv_buffers;          // buffers handed to the kernel so far
  metrics::Histogram login_latency;     // LOGIN received -> LOGIN_ACK queued, seconds
  metrics::Histogram backend_latency;   // seconds

  explicit ShardStats(const metrics::Buckets* latency_buckets)
      : login_latency(latency_buckets), backend_latency(latency_buckets) {}
};

}  // namespace longlink::gateway
