// How shards talk: an N x N grid of bounded single-producer/single-consumer queues (cell [from][to]),
// in the style of Seastar's smp queues. A shard posts fixed-size messages to another shard's inbound
// cell and, once per completion round, wakes each shard it posted to with one io_uring msg_ring
// (IORING_OP_MSG_RING, kernel 5.18). The receiver drains all its inbound cells every loop iteration.
//
// Payloads that do not fit a message travel as a pointer owned by the sending shard; the receiver hands
// the pointer back (kind kShardMessageRelease) so memory is always freed on the shard that allocated it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "core/ring.h"
#include "core/spsc_queue.h"

namespace longlink::core {

// One message in a grid cell: a kind, the sending shard, an optional heap payload owned by the sender, and
// a small typed body copied by value. Each program defines one trivially copyable struct per kind and
// reads it back with Body<T>(), so the meaning of every field is in a type, not in a comment about which
// generic field carries what.
struct ShardMessage {
  static constexpr size_t kBodyBytes = 32;

  uint16_t kind = 0;  // interpreted by the program; kShardMessageRelease is reserved
  uint16_t from = 0;
  uint32_t reserved = 0;
  void* owned = nullptr;  // owned by `from`, handed back with kShardMessageRelease after handling
  alignas(8) unsigned char body[kBodyBytes] = {};

  template <class T>
  static ShardMessage Of(uint16_t kind, const T& b, void* owned = nullptr) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kBodyBytes, "a shard message body is small and flat");
    ShardMessage m;
    m.kind = kind;
    m.owned = owned;
    std::memcpy(m.body, &b, sizeof(T));
    return m;
  }
  template <class T>
  T Body() const {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kBodyBytes, "a shard message body is small and flat");
    T b;
    std::memcpy(&b, body, sizeof(T));
    return b;
  }
};
static_assert(sizeof(ShardMessage) == 48, "grid cells are sized by this");
inline constexpr uint16_t kShardMessageRelease = 0xffff;

// A queue capacity for `shards` shards such that all shards x shards cells together stay within 16 MiB
// (cells are touched as messages cycle through them), clamped to 64..8192 and a power of two.
inline uint32_t DefaultQueueCapacity(uint32_t shards) {
  uint64_t budget = (16ull << 20) / (sizeof(ShardMessage) * static_cast<uint64_t>(shards) * shards);
  uint32_t cap = 64;
  while (cap * 2ull <= budget && cap < 8192) cap *= 2;
  return cap;
}

class ShardGrid {
 public:
  ShardGrid(uint32_t shards, size_t queue_capacity);

  uint32_t shards() const { return shards_; }
  SpscQueue<ShardMessage>& Cell(uint32_t from, uint32_t to) { return *cells_[from * shards_ + to]; }

  // Each shard publishes its ring fd once its ring exists; others read it when they need to wake it.
  void PublishRingFd(uint32_t shard, int fd) { ring_fds_[shard].store(fd, std::memory_order_release); }
  int RingFd(uint32_t shard) const { return ring_fds_[shard].load(std::memory_order_acquire); }

 private:
  uint32_t shards_;
  std::vector<std::unique_ptr<SpscQueue<ShardMessage>>> cells_;
  std::unique_ptr<std::atomic<int>[]> ring_fds_;
};

// One shard's sending side: posts into the grid, keeps what does not fit in a local overflow list (so a
// full queue delays a message instead of losing it), and wakes receivers once per round.
class ShardOutbox {
 public:
  ShardOutbox(ShardGrid* grid, uint32_t self);

  // Posts a message for shard `to`. Always succeeds; returns false if it had to go to overflow.
  bool Post(uint32_t to, const ShardMessage& m);
  // Retries overflow and sends one wake per receiver posted to since the last Flush. `wake_user_data` is
  // what the receiver's completion carries.
  void Flush(Ring* ring, uint64_t wake_user_data);

  size_t overflow_size() const { return overflow_count_; }
  uint64_t wakes_sent() const { return wakes_sent_; }

 private:
  ShardGrid* grid_;
  uint32_t self_;
  std::vector<uint8_t> dirty_;
  std::vector<uint32_t> dirty_list_;
  std::vector<std::deque<ShardMessage>> overflow_;
  size_t overflow_count_ = 0;
  uint64_t wakes_sent_ = 0;
};

// One shard's receiving side: pops from every inbound cell.
template <class Fn>
size_t DrainInbound(ShardGrid* grid, uint32_t self, Fn&& fn) {
  ShardMessage batch[64];
  size_t total = 0;
  for (uint32_t from = 0; from < grid->shards(); ++from) {
    if (from == self) continue;
    SpscQueue<ShardMessage>& q = grid->Cell(from, self);
    for (;;) {
      size_t n = q.PopBatch(batch, 64);
      for (size_t i = 0; i < n; ++i) fn(batch[i]);
      total += n;
      if (n < 64) break;
    }
  }
  return total;
}

}  // namespace longlink::core
