// Failed logins per source address, for throttling password-guessing style attacks: an address with more
// than `max_failures` failed logins within `window` is refused any login for `block` (one shard's view: a
// shard counts the failures of the connections it accepted). The gateway learns a connection's address only
// when it needs it, because its connections are io_uring direct descriptors: after a failed login, and for
// every login while some address is blocked (Shard::HandleLogin), at the cost of one IORING_OP_FIXED_FD_INSTALL
// and a getpeername. Normal logins pay nothing.
#pragma once

#include <cstdint>
#include <cstring>

#include "absl/container/flat_hash_map.h"

namespace longlink::gateway {

// An IPv4 address (mapped into IPv6), or an IPv6 /64 (the lower 64 bits cleared by the caller: one
// subscriber usually holds a whole /64, so counting single IPv6 addresses would count nothing).
struct PeerAddress {
  uint8_t bytes[16] = {};
  bool operator==(const PeerAddress& o) const { return std::memcmp(bytes, o.bytes, 16) == 0; }
  template <typename H>
  friend H AbslHashValue(H h, const PeerAddress& a) {
    return H::combine_contiguous(std::move(h), a.bytes, 16);
  }
};

class LoginGuard {
 public:
  struct Options {
    uint32_t max_failures = 10;  // 0: no throttling
    uint64_t window_ms = 60000;
    uint64_t block_ms = 60000;
    size_t max_entries = 65536;  // addresses tracked per shard; the oldest windows go first when full
  };
  explicit LoginGuard(Options o) : o_(o) {}

  bool enabled() const { return o_.max_failures != 0; }
  // Whether any address is blocked now: then every login is checked.
  bool active(uint64_t now_ms) const { return blocked_until_max_ > now_ms; }
  bool Blocked(const PeerAddress& a, uint64_t now_ms) const;
  // Counts a failed login; true when the address has just become blocked.
  bool Failed(const PeerAddress& a, uint64_t now_ms);
  size_t blocked(uint64_t now_ms) const;
  size_t tracked() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t window_start_ms = 0;
    uint32_t failures = 0;
    uint64_t blocked_until_ms = 0;
  };
  void Prune(uint64_t now_ms);

  Options o_;
  absl::flat_hash_map<PeerAddress, Entry> entries_;
  uint64_t blocked_until_max_ = 0;
};

}  // namespace longlink::gateway
