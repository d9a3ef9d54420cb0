// The one hash both programs agree on: a 64-bit finalizer (splitmix64's) that spreads ids whose low bits
// barely differ (user 1, 2, 3, ...), and the owner shard it picks for a user or group id. The gateway
// places a user's connections, inbox and presence by OwnerShardOf; the loadgen draws message targets with
// Mix64.
#pragma once

#include <cstdint>

namespace longlink::core {

inline constexpr uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The owner shard of a user (or group) id among `shards`. Changing it moves every user: a local data
// directory records its shard count and refuses another.
inline constexpr uint32_t OwnerShardOf(uint64_t id, uint32_t shards) {
  return static_cast<uint32_t>(Mix64(id) % shards);
}

}  // namespace longlink::core
