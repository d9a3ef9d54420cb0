// The echo backend (--backend=echo): answers SEND with SEND_ACK and pushes the message back to the
// sender's devices. No storage and no sequences; for protocol tests and raw gateway throughput.
#pragma once

#include <memory>

#include "gateway/backend/backend.h"

namespace longlink::gateway {

std::unique_ptr<BackendFactory> MakeEchoBackendFactory();

}  // namespace longlink::gateway
