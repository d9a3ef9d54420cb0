// The NATS backend's configuration: its flags (--nats-url, --gateway-id, --nats-partitions, ...) and the
// shared messaging ones (common/messaging_options.h), read once into NatsOptions, and its registry entry.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/backend/common/messaging_options.h"
#include "gateway/backend/registry.h"

namespace longlink::gateway::nats {

struct NatsOptions {
  std::vector<std::string> urls;   // seed servers; the client learns the rest of the cluster from them
  std::string user, password, token, creds_file;
  std::string gateway_id;          // stable across restarts: the gateway's routing identity
  std::string prefix = "ll";       // of every subject, stream and bucket name
  uint32_t partitions = 16;        // fixed for a deployment (recorded in the <PREFIX>_META bucket)
  uint32_t replicas = 3;           // of every stream and bucket
  uint64_t lease_ms = 6000;        // a partition owner's lease; a dead owner's partitions move after it
  uint64_t request_timeout_ms = 3000;   // one NATS round trip (publish acknowledgement, message get)
  uint64_t send_timeout_ms = 8000;      // a SEND coordinated across partitions, before UNAVAILABLE
  uint64_t start_timeout_ms = 30000;    // waiting for the cluster's JetStream at start
  std::vector<std::string> monitor_urls;  // nats-server monitoring endpoints re-exported on /metrics
  MessagingOptions messaging;
  uint32_t shards = 1;
  uint32_t max_frame_bytes = 65536;  // the gateway's --max-frame-bytes: bounds what services send and push
};

// Reads this backend's flags; the error names the bad flag.
absl::StatusOr<NatsOptions> NatsOptionsFromFlags(const GatewayInfo& gateway);

// The registry entry (gateway/backend/registry.cc).
absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureNatsBackend(const GatewayInfo& gateway);

}  // namespace longlink::gateway::nats
