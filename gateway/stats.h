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
  R(write_timeout)                \
  R(ws_bad_message)               \
  R(ws_bad_origin)                \
  R(ws_bad_path)                  \
  R(ws_bad_upgrade)               \
  R(ws_invalid_utf8)              \
  R(ws_message_too_large)         \
  R(ws_protocol_error)            \
  R(ws_text_refused)              \
  R(ws_unsupported_version)       \
  R(ws_upgrade_too_large)

enum class CloseReason : uint8_t {
#define LL_ENUM_(n) k_##n,
  LONGLINK_CLOSE_REASONS(LL_ENUM_)
#undef LL_ENUM_
      kCount
};
std::string_view CloseReasonName(CloseReason r);

#define LONGLINK_GATEWAY_COUNTERS(C)                                                                  \
  C(accept_errors_total, "Accept completions that failed (other than a full fixed-file table)")      \
  C(buffer_ring_exhausted_total, "Receives that found the shard's buffer ring empty (-ENOBUFS)")     \
  C(cross_shard_messages_total, "Messages posted to other shards")                                   \
  C(cross_shard_overflow_total, "Cross-shard posts that found the queue full and waited locally")    \
  C(fixed_table_full_total, "Times accept paused because the shard's fixed-file table was full")     \
  C(heartbeat_timeouts_total, "Connections closed for missing heartbeats")                           \
  C(kicks_total, "Sessions kicked (duplicate device login or by request)")                           \
  C(login_failures_total, "Login attempts rejected (bad token, malformed login, backend denial)")    \
  C(logins_total, "Successful logins")                                                               \
  C(migrations_total, "Connections moved to their user's owner shard at login")                      \
  C(slow_consumers_total, "Connections closed because their output queue passed --max-pending-bytes") \
  C(stale_completions_total, "Completions dropped because their connection was closed and reused")   \
  C(write_timeouts_total, "Connections closed because a send made no progress in time")

// Counters split by the connection's transport: the `transport` label ("tcp" or "ws").
#define LONGLINK_GATEWAY_TRANSPORT_COUNTERS(C)                                                        \
  C(accepts_total, "Connections accepted")                                                           \
  C(received_bytes_total, "Bytes received from clients")                                             \
  C(sent_bytes_total, "Bytes sent to clients")

enum class Transport : uint8_t { kTcp = 0, kWs = 1 };
inline constexpr size_t kTransports = 2;
inline std::string_view TransportName(size_t t) { return t == 0 ? "tcp" : "ws"; }

// The `result` label of longlink_gateway_ws_upgrades_total: the first entries are the gateway's own
// outcomes, then one per protocol::ws::UpgradeError (index kWsUpgradeParseErrorBase + error).
enum WsUpgradeResult : uint8_t { kWsUpgradeOk, kWsUpgradeEcho, kWsUpgradeBadPath, kWsUpgradeBadOrigin,
                                 kWsUpgradeParseErrorBase };
inline constexpr size_t kWsUpgradeResults = kWsUpgradeParseErrorBase + 32;
inline constexpr size_t kWsErrors = 32;  // room for every protocol::ws::Error value

struct ShardStats {
#define LL_COUNTER_(name, help) metrics::Counter name;
  LONGLINK_GATEWAY_COUNTERS(LL_COUNTER_)
#undef LL_COUNTER_
#define LL_COUNTER_(name, help) std::array<metrics::Counter, kTransports> name;
  LONGLINK_GATEWAY_TRANSPORT_COUNTERS(LL_COUNTER_)
#undef LL_COUNTER_
  std::array<metrics::Counter, static_cast<size_t>(CloseReason::kCount)> closes;
  // [transport][opcode]; opcode 0 collects unknown opcodes.
  std::array<std::array<metrics::Counter, protocol::kMaxOpcode + 1>, kTransports> frames_in;
  std::array<std::array<metrics::Counter, protocol::kMaxOpcode + 1>, kTransports> frames_out;
  std::array<metrics::Counter, kWsUpgradeResults> ws_upgrades;  // by WsUpgradeResult
  std::array<metrics::Counter, kWsErrors> ws_errors;            // by protocol::ws::Error
  std::array<metrics::Gauge, kTransports> connections;  // accepted and not yet closed
  std::array<metrics::Gauge, kTransports> sessions;     // logged in
  metrics::Gauge pending_send_bytes;    // bytes in output queues
  metrics::Gauge ring_mode;             // core::RingMode
  metrics::Gauge recv_buffers;          // buffers handed to the kernel so far
  metrics::Histogram login_latency;     // LOGIN received -> LOGIN_ACK queued, seconds
  metrics::Histogram backend_latency;   // seconds
  metrics::Histogram fsync_latency;     // one fdatasync of the backend's store, seconds
  metrics::Histogram round_busy;        // one loop round from the wake-up to the next wait, seconds

  explicit ShardStats(const metrics::Buckets* latency_buckets)
      : login_latency(latency_buckets),
        backend_latency(latency_buckets),
        fsync_latency(latency_buckets),
        round_busy(latency_buckets) {}
};

}  // namespace longlink::gateway
