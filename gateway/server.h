// The gateway process: binds one SO_REUSEPORT listener per shard, starts the shards, serves metrics, and
// drains on SIGTERM/SIGINT.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "gateway/backend/backend.h"
#include "gateway/config.h"

namespace longlink::gateway {

// Runs until a termination signal has been handled and every shard has drained, with the backend that
// `factory` (made by the backend's registry entry) creates. Prints one line
// "longlink-gateway listening on HOST:PORT shards=N metrics=PORT ..." on stdout once ready.
absl::Status RunGateway(const Config& config, std::unique_ptr<BackendFactory> factory);

}  // namespace longlink::gateway
