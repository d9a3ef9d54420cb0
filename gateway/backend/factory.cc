#include "absl/strings/str_cat.h"
#include "gateway/backend/backend.h"
#include "gateway/backend/echo/echo_backend.h"
#include "gateway/backend/local/local_backend.h"
#include "gateway/config.h"

namespace longlink::gateway {

absl::StatusOr<std::unique_ptr<BackendFactory>> MakeBackendFactory(const Config& config) {
  if (config.backend == "echo") return MakeEchoBackendFactory();
  if (config.backend == "local") {
    absl::StatusOr<std::unique_ptr<local::LocalFactory>> f = local::LocalFactory::Create(config);
    if (!f.ok()) return f.status();
    return std::unique_ptr<BackendFactory>(std::move(*f));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--backend: unknown backend '", config.backend, "' (available: local, echo)"));
}

}  // namespace longlink::gateway
