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

// The stale-completion guard of both programs: a completion is stale when its slot lies past the table
// (`slots` in use so far) or now holds a later generation (`current_gen`: the slot's own counter, of which
// 24 bits travel). A stale completion belongs to an object that was closed and reused; it is counted and
// dropped, and a receive among them still hands its buffer back (BufRing::RecycleFrom).
inline constexpr bool IsStale(const UserData& ud, uint32_t slots, uint32_t current_gen) {
  return ud.slot >= slots || (current_gen & kGenMask) != ud.gen;
}

}  // namespace longlink::core
