// The local backend's configuration: its own flags (--data-dir, --fsync, --fsync-interval-ms,
// --segment-bytes) and the shared messaging ones (common/messaging_options.h), read once into
// LocalOptions, and its registry entry.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/backend/registry.h"

namespace longlink::gateway::local {

// When a stored message is made durable before it is acknowledged.
enum class FsyncPolicy : uint8_t { kAlways, kBatch, kNone };
const char* FsyncPolicyName(FsyncPolicy p);

struct LocalOptions {
  std::string data_dir = "./longlink-data";
  FsyncPolicy fsync = FsyncPolicy::kBatch;
  uint32_t fsync_interval_us = 2000;
  uint64_t retention_ms = 14ull * 24 * 3600 * 1000;
  uint64_t idempotency_window_ms = 5ull * 60 * 1000;
  uint32_t max_inbox = 10000;
  uint64_t segment_bytes = 64ull << 20;
  // What one device may pin (docs/protocol.md 6.8): SENDs and group changes per second, presence
  // subscriptions at once, and members per group.
  uint32_t max_sends_per_second = 200;
  uint32_t max_group_ops_per_second = 10;
  uint32_t max_presence_subscriptions = 1000;
  uint32_t max_group_members = 10000;
  // From the gateway.
  uint32_t shards = 1;
  uint32_t max_pending_bytes = 1 << 20;
};

// Reads this backend's flags; the error names the bad flag.
absl::StatusOr<LocalOptions> LocalOptionsFromFlags(const GatewayInfo& gateway);

// The registry entry (gateway/backend/registry.cc).
absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureLocalBackend(const GatewayInfo& gateway);

}  // namespace longlink::gateway::local
