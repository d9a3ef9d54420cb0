// Per-device request limits shared by the storing backends (--max-sends-per-second,
// --max-group-ops-per-second, docs/protocol.md 6.12): counts in the current whole second.
#pragma once

#include <cstdint>

namespace longlink::gateway {

struct DeviceRate {
  uint32_t window_s = 0;
  uint32_t sends = 0;
  uint32_t group_ops = 0;

  // Counts one request on `counter` unless `limit` (0: no limit) is already reached in the second of
  // `now_ms` (a monotonic clock); false when refused.
  bool Allow(uint32_t DeviceRate::*counter, uint32_t limit, uint64_t now_ms) {
    if (limit == 0) return true;
    uint32_t now_s = static_cast<uint32_t>(now_ms / 1000);
    if (window_s != now_s) {
      window_s = now_s;
      sends = 0;
      group_ops = 0;
    }
    if (this->*counter >= limit) return false;
    ++(this->*counter);
    return true;
  }
};

}  // namespace longlink::gateway
