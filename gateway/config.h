// The gateway's configuration: every flag is read once at start into this immutable struct, validated,
// and handed to each shard. Nothing reads a flag after that. A backend's own flags live in its folder and
// are read by its registry entry (gateway/backend/registry.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longlink::gateway {

enum class AuthMode : uint8_t { kNone, kToken };

struct Config {
  std::string bind = "0.0.0.0";
  uint16_t port = 7000;
  uint32_t shards = 0;
  uint32_t max_conns_per_shard = 0;
  std::string metrics_bind = "0.0.0.0";
  int32_t metrics_port = 9100;  // -1: off
  AuthMode auth = AuthMode::kToken;
  std::string auth_secret;
  uint32_t token_grace_ms = 60000;  // --auth=token: a session lives this long past its token's expiry
  uint32_t max_login_failures = 10;   // per source address per minute (per shard); 0: no throttling
  uint32_t login_block_ms = 60000;    // how long an address over it is refused
  uint32_t login_timeout_ms = 10000;
  uint32_t heartbeat_interval_ms = 30000;
  uint32_t heartbeat_timeout_ms = 90000;
  uint32_t write_timeout_ms = 15000;
  uint32_t max_pending_bytes = 1 << 20;
  uint32_t max_frame_bytes = 64 * 1024;
  uint32_t drain_seconds = 10;
  std::string backend;  // --backend, as chosen in the backend registry (gateway/backend/registry.h)
  // Admin HTTP API
  int32_t admin_port = -1;  // -1: off
  std::string admin_bind = "127.0.0.1";
  std::string admin_token;
  std::string web_root;  // empty: no static files; else an absolute, resolved directory (the web chat page)
  uint32_t recv_buffer_size = 2048;
  uint32_t recv_buffers = 4096;
  uint32_t queue_capacity = 8192;  // 0 in the flag means core::DefaultQueueCapacity(shards)
  uint32_t ring_entries = 4096;
  uint32_t tick_ms = 20;
  bool force_plain_ring = false;
  // WebSocket transport (docs/protocol.md section 5.2).
  int32_t ws_port = -1;  // -1: off, 0: a free port
  std::string ws_path = "/";
  // Browsers' Origin header: any (ws_any_origin), these exact values, or (both unset) one whose host is the
  // request's Host (any scheme and port), so a page served from another host cannot open a session.
  bool ws_any_origin = false;
  std::vector<std::string> ws_allowed_origins;
  uint32_t ws_max_message_bytes = 64 * 1024;
  uint32_t ws_max_header_bytes = 8192;
  bool ws_accept_text = false;
  std::string ws_echo_path;  // empty: off
};

// Reads the parsed command-line flags into a Config and checks them; the error names the bad flag.
absl::StatusOr<Config> ConfigFromFlags();

}  // namespace longlink::gateway
