#include "absl/strings/str_cat.h"
#include "gateway/backend/backend.h"
#include "gateway/backend/echo/echo_backend.h"
#include "gateway/config.h"

namespace longlink::gateway {

absl::StatusOr<std::unique_ptr<BackendFactory>> MakeBackendFactory(const Config& config) {
  if (config.backend == "echo") return MakeEchoBackendFactory();
  return absl::InvalidArgumentError(absl::StrCat("--backend: unknown backend '", config.backend, "' (available: echo)"));
}

}  // namespace longlink::gateway
