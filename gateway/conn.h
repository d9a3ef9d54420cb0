// Per-connection state and the shard's connection table.
//
// A connection is one compact Conn (48 bytes) in a per-shard table indexed by a connection id of our own
// (not the kernel's fixed-file slot, which the kernel may hand out again while a closed connection still
// waits for its last completions). The table is one anonymous mapping sized for the shard's capacity:
// pages are touched only as ids come into use, and freed ids are reused most-recent first.
//
// An idle connection owns nothing else: the carry-over buffer exists only while a partial frame is
// pending, the output queue only while bytes wait to be sent.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "core/bytes.h"
#include "gateway/stats.h"

namespace longlink::gateway {

// kCheckingAddress: a LOGIN waits while the connection's source address is looked up (LoginGuard).
enum class ConnState : uint8_t { kFree, kAwaitLogin, kCheckingAddress, kMigrating, kActive, kClosing };

enum ConnFlags : uint8_t {
  kRecvArmed = 1 << 0,      // a recv (one-shot before login, multishot after) is outstanding
  kSendInflight = 1 << 1,   // a send is outstanding
  kDirty = 1 << 2,          // on the shard's list of connections with bytes to flush this round
  kCloseInflight = 1 << 3,  // shutdown + close_direct submitted (core::PrepShutdownAndClose), completion pending
  kCloseAfterFlush = 1 << 4,  // stop reading; close once the output queue is flushed
  kRecvStarved = 1 << 5,    // recv ended with -ENOBUFS; re-armed after the round
  kMultishot = 1 << 6,      // the outstanding recv is multishot
  kInRegistry = 1 << 7,
};

// WebSocket state of a connection, kept in the spare top byte of Conn::file_slot so Conn stays 48 bytes, and
// one bit of the login check that has no better home.
enum WsBits : uint8_t {
  kWsTransport = 1 << 0,   // accepted on the WebSocket listener (transport label "ws")
  kWsOpen = 1 << 1,        // upgrade answered 101: bytes are WebSocket frames from here on
  kWsEcho = 1 << 2,        // upgraded on --ws-echo-path: messages are echoed, no session
  kWsCloseSent = 1 << 3,   // our close frame is queued; nothing may follow it
  kWsFragmented = 1 << 4,  // a fragmented message is in progress (its buffer is in Shard::ws_messages_)
  kAddrChecked = 1 << 5,   // the source address passed the login guard; its LOGIN proceeds
};

using core::Carry;
using core::OutQueue;

struct Conn {
  uint32_t gen;
  // io_uring caps a fixed-file table at 2^20 entries (IORING_MAX_FIXED_FILES), so a slot fits in 24 bits and
  // the top byte holds the WebSocket bits (WsBits) instead of growing the struct.
  uint32_t file_slot : 24;
  uint32_t ws : 8;
  uint64_t user_id;
  uint32_t device_id;
  uint32_t next;          // next connection of the same user (registry chain), or next free id
  uint32_t last_rx_tick;  // low 32 bits of the shard tick when the last bytes arrived
  ConnState state;
  uint8_t flags;
  CloseReason reason;
  uint8_t platform;
  Carry* carry;
  OutQueue* out;
};
static_assert(sizeof(Conn) == 48, "Conn should stay compact: it is per-connection memory");

inline constexpr uint32_t kNoConn = 0xffffffffu;

class ConnTable {
 public:
  ConnTable() = default;
  ~ConnTable() {
    if (conns_ != nullptr) munmap(conns_, bytes_);
    if (expiry_ != nullptr) munmap(expiry_, sizeof(uint32_t) * static_cast<size_t>(capacity_));
  }
  ConnTable(const ConnTable&) = delete;
  ConnTable& operator=(const ConnTable&) = delete;

  absl::Status Init(uint32_t capacity) {
    capacity_ = capacity;
    bytes_ = sizeof(Conn) * static_cast<size_t>(capacity);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return absl::ResourceExhaustedError("cannot map the connection table");
    conns_ = static_cast<Conn*>(p);
    return absl::OkStatus();
  }

  // A fresh connection id, or kNoConn when the table is full.
  uint32_t Alloc() {
    uint32_t id;
    if (free_head_ != kNoConn) {
      id = free_head_;
      free_head_ = conns_[id].next;
    } else if (high_water_ < capacity_) {
      id = high_water_++;
      conns_[id].gen = 0;
    } else {
      return kNoConn;
    }
    Conn& c = conns_[id];
    uint32_t gen = c.gen;
    std::memset(&c, 0, sizeof(c));
    c.gen = gen;
    c.next = kNoConn;
    ++live_;
    return id;
  }
  void Free(uint32_t id) {
    Conn& c = conns_[id];
    c.state = ConnState::kFree;
    c.gen = (c.gen + 1) & 0xffffff;
    c.next = free_head_;
    free_head_ = id;
    --live_;
  }

  // With --auth=token: a second array, parallel to the table, of each session's token expiry (Unix
  // seconds), so Conn itself stays 48 bytes. Pages are touched only as ids come into use.
  absl::Status EnableExpiry() {
    void* p = mmap(nullptr, sizeof(uint32_t) * static_cast<size_t>(capacity_), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return absl::ResourceExhaustedError("cannot map the session expiry table");
    expiry_ = static_cast<uint32_t*>(p);
    return absl::OkStatus();
  }
  bool has_expiry() const { return expiry_ != nullptr; }
  uint32_t expiry(uint32_t id) const { return expiry_[id]; }
  void set_expiry(uint32_t id, uint32_t unix_s) { expiry_[id] = unix_s; }

  Conn& operator[](uint32_t id) { return conns_[id]; }
  bool Valid(uint32_t id, uint32_t gen) const {
    return id < high_water_ && conns_[id].gen == gen && conns_[id].state != ConnState::kFree;
  }
  uint32_t high_water() const { return high_water_; }
  uint32_t live() const { return live_; }
  uint32_t capacity() const { return capacity_; }

 private:
  Conn* conns_ = nullptr;
  uint32_t* expiry_ = nullptr;
  size_t bytes_ = 0;
  uint32_t capacity_ = 0;
  uint32_t high_water_ = 0;
  uint32_t free_head_ = kNoConn;
  uint32_t live_ = 0;
};

// user id -> first connection of that user on this shard; further devices chain through Conn::next.
// Every connection of a user lives on the user's owner shard, so this map is complete for its users.
class Registry {
 public:
  explicit Registry(ConnTable* table) : table_(table) {}

  // Adds conn id to its user's chain. Returns the id of an existing connection of the same device, or
  // kNoConn.
  uint32_t Add(uint32_t id) {
    Conn& c = (*table_)[id];
    auto [it, inserted] = map_.try_emplace(c.user_id, id);
    uint32_t same_device = kNoConn;
    if (!inserted) {
      for (uint32_t o = it->second; o != kNoConn; o = (*table_)[o].next) {
        if ((*table_)[o].device_id == c.device_id) same_device = o;
      }
      c.next = it->second;
      it->second = id;
    } else {
      c.next = kNoConn;
    }
    c.flags |= kInRegistry;
    return same_device;
  }
  // Returns true if this was the user's last connection on the shard.
  bool Remove(uint32_t id) {
    Conn& c = (*table_)[id];
    c.flags &= static_cast<uint8_t>(~kInRegistry);
    auto it = map_.find(c.user_id);
    if (it == map_.end()) return false;
    if (it->second == id) {
      if (c.next == kNoConn) {
        map_.erase(it);
        return true;
      }
      it->second = c.next;
    } else {
      for (uint32_t o = it->second; o != kNoConn; o = (*table_)[o].next) {
        if ((*table_)[o].next == id) {
          (*table_)[o].next = c.next;
          break;
        }
      }
    }
    c.next = kNoConn;
    return false;
  }
  // First connection of a user, or kNoConn; walk on with Conn::next.
  uint32_t First(uint64_t user_id) const {
    auto it = map_.find(user_id);
    return it == map_.end() ? kNoConn : it->second;
  }
  size_t users() const { return map_.size(); }

 private:
  ConnTable* table_;
  absl::flat_hash_map<uint64_t, uint32_t> map_;
};

}  // namespace longlink::gateway
