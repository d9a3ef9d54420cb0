#include "gateway/backend/registry.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "gateway/backend/echo/echo_backend.h"
#include "gateway/backend/local/local_config.h"
#include "gateway/backend/nats/nats_config.h"

ABSL_FLAG(std::string, backend, "local",
          "Backend: local (the embedded IM service: durable inboxes, groups, presence), nats (many gateways in "
          "front of a NATS JetStream cluster) or echo (answers and pushes back, stores nothing); each backend's own "
          "flags are listed with it");

namespace longlink::gateway {
namespace {

constexpr BackendEntry kBackends[] = {
    {"local", "the embedded IM service: durable inboxes, groups, presence (docs/protocol.md 6.5)",
     local::ConfigureLocalBackend},
    {"echo", "answers SEND with SEND_ACK and pushes it back to the sender; stores nothing", ConfigureEchoBackend},
    {"nats", "gateways in front of a NATS cluster with JetStream: the local backend's semantics across machines",
     nats::ConfigureNatsBackend},
};

}  // namespace

std::span<const BackendEntry> Backends() { return kBackends; }

std::string BackendNames() {
  std::string out;
  for (const BackendEntry& b : kBackends) absl::StrAppend(&out, out.empty() ? "" : ", ", b.name);
  return out;
}

absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureBackend(absl::string_view name, const GatewayInfo& gateway) {
  for (const BackendEntry& b : kBackends) {
    if (b.name == name) return b.configure(gateway);
  }
  return absl::InvalidArgumentError(absl::StrCat("--backend: unknown backend '", name, "' (available: ",
                                                 BackendNames(), ")"));
}

absl::StatusOr<ChosenBackend> ConfigureBackendFromFlags(const GatewayInfo& gateway) {
  ChosenBackend c;
  c.name = absl::GetFlag(FLAGS_backend);
  absl::StatusOr<std::unique_ptr<BackendFactory>> f = ConfigureBackend(c.name, gateway);
  if (!f.ok()) return f.status();
  c.factory = std::move(*f);
  return c;
}

}  // namespace longlink::gateway
