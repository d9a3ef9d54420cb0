// The table of backends: --backend=<name> picks a row, and the row's Configure reads that backend's own
// flags (defined in its folder) into a factory. Adding a backend is a folder under gateway/backend/ with
// its library, plus one row in registry.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "gateway/backend/backend.h"

namespace longlink::gateway {

// What a backend may know of the gateway's configuration.
struct GatewayInfo {
  uint32_t shards = 1;
  uint32_t max_pending_bytes = 1 << 20;  // per-connection output bound (a SYNC answer stays well under it)
  uint32_t max_frame_bytes = 64 * 1024;
  uint16_t port = 0;  // the client port asked for (0: any), for default identities
};

struct BackendEntry {
  absl::string_view name;
  absl::string_view summary;
  // Reads and checks the backend's flags, with no side effects (nothing is created on disk or dialled);
  // an error names the flag and makes the gateway exit with status 2.
  absl::StatusOr<std::unique_ptr<BackendFactory>> (*configure)(const GatewayInfo& gateway);
};

std::span<const BackendEntry> Backends();
// The names, comma-separated, for messages.
std::string BackendNames();
absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureBackend(absl::string_view name, const GatewayInfo& gateway);

// --backend (defined here, with the table; the first row is the default) and that backend's flags.
struct ChosenBackend {
  std::string name;
  std::unique_ptr<BackendFactory> factory;
};
absl::StatusOr<ChosenBackend> ConfigureBackendFromFlags(const GatewayInfo& gateway);

}  // namespace longlink::gateway
