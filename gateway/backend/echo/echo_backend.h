// The echo backend (--backend=echo): answers SEND with SEND_ACK and pushes the message back to the
// sender's devices. No storage and no sequences; for protocol tests and raw gateway throughput. Its admin
// operations push live (nothing is stored), kick and describe sessions; it has no groups and no flags.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "gateway/backend/registry.h"

namespace longlink::gateway {

// The registry entry (gateway/backend/registry.cc).
absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureEchoBackend(const GatewayInfo& gateway);

}  // namespace longlink::gateway
