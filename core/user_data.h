// The 64-bit io_uring user_data of every request: {op, generation, slot}. A completion whose generation no
// longer matches its slot belongs to an object that was closed and reused, and is dropped.
#pragma once

#include <cstdint>

namespace longlink::core {

struct UserData {
  uint8_t op;
  uint32_t gen;  // 24 bits are kept
  uint32_t slot;
};

inline constexpr uint32_t kGenMask = 0xffffff;

inline constexpr uint64_t PackUserData(uint8_t op, uint32_t gen, uint32_t slot) {
  return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(gen & kGenMask) << 32) | slot;
}
inline constexpr UserData UnpackUserData(uint64_t v) {
  return UserData{static_cast<uint8_t>(v >> 56), static_cast<uint32_t>(v >> 32) & kGenMask,
                  static_cast<uint32_t>(v)};
}

}  // namespace longlink::core
