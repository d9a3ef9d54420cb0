// The messaging semantics every storing backend (local, nats) implements the same way, and the flags that
// tune them: how long messages and client message ids are kept, how many messages an inbox holds, and what
// one device may pin (docs/protocol.md 6.5, 6.12). One set of flags, so switching --backend keeps them.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longlink::gateway {

struct MessagingOptions {
  uint64_t retention_ms = 14ull * 24 * 3600 * 1000;
  uint64_t idempotency_window_ms = 5ull * 60 * 1000;
  uint32_t max_inbox = 10000;
  uint32_t max_sends_per_second = 200;
  uint32_t max_group_ops_per_second = 10;
  uint32_t max_presence_subscriptions = 1000;
  uint32_t max_group_members = 10000;
};

// Reads --retention, --idempotency-window, --max-inbox and the per-device limits; the error names the flag.
absl::StatusOr<MessagingOptions> MessagingOptionsFromFlags();
// "14d", or anything absl::ParseDuration takes ("36h", "3600s"), in milliseconds; at least 1s.
absl::StatusOr<uint64_t> ParseRetention(absl::string_view text);

}  // namespace longlink::gateway
