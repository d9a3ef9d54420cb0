// Per-shard gateway statistics, declared once as sorted macro lists (metrics/stats.h). The collector in
// gateway/server.cc exports each entry as longlink_gateway_<name>, summing the shards at scrape time
// (per-shard gauges keep a `shard` label); ShardStats::Visit names the labels of the labelled families.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "metrics/metrics.h"
#include "metrics/stats.h"
#include "protocol/frame.h"

namespace longlink::gateway {

// Why a connection closed: the `reason` label of longlink_gateway_closes_total.
#define LONGLINK_CLOSE_REASONS(R) \
  R(auth_expired)                 \
  R(auth_failed)                  \
  R(bad_frame)                    \
  R(draining)                     \
  R(frame_too_large)              \
  R(heartbeat_timeout)            \
  R(kicked)                       \
  R(login_rejected)               \
  R(login_throttled)              \
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
  C(login_throttled_total, "Logins refused because their source address failed too many (--max-login-failures)") \
  C(logins_total, "Successful logins")                                                               \
  C(mailbox_calls_total, "Calls run on the shard for threads outside the shards (admin API, backend clients)") \
  C(migrations_total, "Connections moved to their user's owner shard at login")                      \
  C(sessions_expired_total, "Sessions kicked (AUTH_EXPIRED) at their token's expiry plus --token-grace") \
  C(slow_consumers_total, "Connections closed because their output queue passed --max-pending-bytes") \
  C(stale_completions_total, "Completions dropped because their connection was closed and reused")   \
  C(token_refreshes_total, "Tokens renewed on a live session (a second LOGIN of the same user and device)") \
  C(write_timeouts_total, "Connections closed because a send made no progress in time")

// Gauges with one series per shard (label `shard`).
#define LONGLINK_GATEWAY_SHARD_GAUGES(G)                                                               \
  G(cross_shard_queue_depth, "Messages waiting in the queues into each shard (read at scrape time)")  \
  G(draining, "1 while the shard drains (SIGTERM: GOAWAY sent, answering what it accepted)")         \
  G(login_blocked_addresses, "Source addresses whose logins are refused for failing too often")      \
  G(pending_send_bytes, "Bytes queued for sending, by shard")                                        \
  G(recv_buffers, "Receive buffers in each shard's buffer ring")

#define LONGLINK_GATEWAY_HISTOGRAMS(H)                                                                \
  H(backend_latency_seconds, "Time spent in backend operations (SEND received to SEND_ACK queued)")  \
  H(login_latency_seconds, "LOGIN received to LOGIN_ACK queued")                                     \
  H(push_delay_seconds, "A message's server time (SEND accepted, 1 ms resolution) to its live PUSH queued")  \
  H(loop_round_seconds,                                                                              \
    "Busy time of one shard loop round (completions, queues, timers, backend, sends); a long round "  \
    "delays every connection of the shard")

// Counters split by the connection's transport: the `transport` label ("tcp" or "ws").
#define LONGLINK_GATEWAY_TRANSPORT_COUNTERS(C)                                                        \
  C(accepts_total, "Connections accepted")                                                           \
  C(received_bytes_total, "Bytes received from clients")                                             \
  C(sent_bytes_total, "Bytes sent to clients")

// Per-shard gauges split by transport (labels `shard`, `transport`).
#define LONGLINK_GATEWAY_TRANSPORT_SHARD_GAUGES(G)                                                    \
  G(connections, "Open client connections, by shard and transport")                                  \
  G(sessions, "Logged-in sessions, by shard and transport")

enum class Transport : uint8_t { kTcp = 0, kWs = 1 };
inline constexpr size_t kTransports = 2;
inline std::string_view TransportName(size_t t) { return t == 0 ? "tcp" : "ws"; }

// The `result` label of longlink_gateway_ws_upgrades_total: the first entries are the gateway's own
// outcomes, then one per protocol::ws::UpgradeError (index kWsUpgradeParseErrorBase + error).
enum WsUpgradeResult : uint8_t { kWsUpgradeOk, kWsUpgradeEcho, kWsUpgradeBadPath, kWsUpgradeBadOrigin,
                                 kWsUpgradeParseErrorBase };
inline constexpr size_t kWsUpgradeResults = kWsUpgradeParseErrorBase + 32;
inline constexpr size_t kWsErrors = 32;  // room for every protocol::ws::Error value
inline constexpr size_t kRingModes = 3;  // core::RingMode values

struct ShardStats {
  LL_STATS_FIELDS(LONGLINK_GATEWAY_COUNTERS, LONGLINK_GATEWAY_SHARD_GAUGES, LONGLINK_GATEWAY_HISTOGRAMS)
#define LL_TRANSPORT_COUNTER_(name, help) std::array<metrics::Counter, kTransports> name;
  LONGLINK_GATEWAY_TRANSPORT_COUNTERS(LL_TRANSPORT_COUNTER_)
#undef LL_TRANSPORT_COUNTER_
#define LL_TRANSPORT_GAUGE_(name, help) std::array<metrics::Gauge, kTransports> name;
  LONGLINK_GATEWAY_TRANSPORT_SHARD_GAUGES(LL_TRANSPORT_GAUGE_)
#undef LL_TRANSPORT_GAUGE_
  // closes_total{reason}
  std::array<metrics::Counter, static_cast<size_t>(CloseReason::kCount)> closes;
  // frames_received_total / frames_sent_total{opcode, transport}: [transport][opcode]; opcode 0 collects
  // unknown opcodes.
  std::array<std::array<metrics::Counter, protocol::kMaxOpcode + 1>, kTransports> frames_in;
  std::array<std::array<metrics::Counter, protocol::kMaxOpcode + 1>, kTransports> frames_out;
  std::array<metrics::Counter, kWsUpgradeResults> ws_upgrades;  // ws_upgrades_total{result}, by WsUpgradeResult
  std::array<metrics::Counter, kWsErrors> ws_errors;            // ws_protocol_errors_total{error}
  // ring_mode{shard, mode}: 1 in the slot of the io_uring setup mode the shard runs with (exported alone).
  std::array<metrics::Gauge, kRingModes> ring_mode;

  // Every family above, in the order /metrics lists them (the rows of the lists, then the labelled ones).
  void Visit(metrics::StatsVisitor& v) const;
};

}  // namespace longlink::gateway
