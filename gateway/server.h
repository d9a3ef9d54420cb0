// The gateway process: binds one SO_REUSEPORT listener per shard, starts the shards, serves metrics, and
// drains on SIGTERM/SIGINT.
#pragma once

#include "absl/status/status.h"
#include "gateway/config.h"

namespace longlink::gateway {

// Runs until a termination signal has been handled and every shard has drained. Prints one line
// "longlink-gateway listening on HOST:PORT shards=N metrics=PORT" on stdout once ready.
absl::Status RunGateway(const Config& config);

}  // namespace longlink::gateway
