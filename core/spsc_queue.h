// A bounded single-producer/single-consumer queue: one cell of the N x N grid that shards use to pass
// messages to each other (see core/shard.h).
//
// A ring of trivially copyable items indexed by two free-running 64-bit counters: tail_ is written only
// by the producer, head_ only by the consumer, so no read-modify-write atomics and no locks are needed.
// Each counter sits on its own cache line next to the owning side's cached copy of the other counter;
// a side rereads the other's counter only when its cached copy says the ring looks full (producer) or
// empty (consumer), so in steady state the two cores exchange the counter lines once per batch, not once
// per item.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

namespace longlink::core {

// T must be trivially copyable. Capacity is rounded up to a power of two.
template <class T>
class SpscQueue {
  static_assert(std::is_trivially_copyable_v<T>, "SpscQueue copies items with memcpy");

 public:
  explicit SpscQueue(size_t capacity)
      : mask_(std::bit_ceil(capacity < 1 ? size_t{1} : capacity) - 1),
        slots_(static_cast<T*>(::operator new(sizeof(T) * (mask_ + 1), std::align_val_t{alignof(T)}))) {}
  ~SpscQueue() { ::operator delete(slots_, std::align_val_t{alignof(T)}); }
  SpscQueue(const SpscQueue&) = delete;
  SpscQueue& operator=(const SpscQueue&) = delete;

  // Producer thread only. False when full.
  bool TryPush(const T& v) {
    // relaxed: tail_ is written only by this thread, so it always reads its own latest store.
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      // acquire: pairs with the consumer's release store of head_, so the consumer's reads of the slots
      // it freed happen before the write below reuses them.
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) {
        return false;
      }
    }
    // memcpy implicitly creates the T in the raw slot (T is an implicit-lifetime type).
    std::memcpy(static_cast<void*>(&slots_[tail & mask_]), &v, sizeof(T));
    // release: pairs with the consumer's acquire load of tail_, publishing the slot write above.
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Consumer thread only. False when empty.
  bool TryPop(T* out) {
    // relaxed: head_ is written only by this thread.
    const uint64_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      // acquire: pairs with the producer's release store of tail_, so the slot contents written before
      // that store are visible to the read below.
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) {
        return false;
      }
    }
    std::memcpy(static_cast<void*>(out), &slots_[head & mask_], sizeof(T));
    // release: pairs with the producer's acquire load of head_; the slot read above completes before the
    // producer may overwrite the slot.
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  // Consumer thread only: pops up to max items into out, returns how many. One index store for the whole
  // batch, so the producer sees one cache-line transfer instead of one per item.
  size_t PopBatch(T* out, size_t max) {
    // relaxed: head_ is written only by this thread.
    const uint64_t head = head_.load(std::memory_order_relaxed);
    uint64_t avail = tail_cache_ - head;
    if (avail < max) {
      // acquire: as in TryPop; makes every slot up to the new tail visible.
      tail_cache_ = tail_.load(std::memory_order_acquire);
      avail = tail_cache_ - head;
    }
    const size_t n = avail < max ? static_cast<size_t>(avail) : max;
    if (n == 0) {
      return 0;
    }
    // The run may wrap past the end of the ring: copy it as at most two contiguous pieces.
    const size_t start = static_cast<size_t>(head & mask_);
    const size_t first = n < mask_ + 1 - start ? n : mask_ + 1 - start;
    std::memcpy(static_cast<void*>(out), &slots_[start], first * sizeof(T));
    std::memcpy(static_cast<void*>(out + first), &slots_[0], (n - first) * sizeof(T));
    // release: as in TryPop; all n slot reads complete before the producer can reuse those slots.
    head_.store(head + n, std::memory_order_release);
    return n;
  }

  // Either thread; an approximation while the other side runs (for the queue-depth gauge).
  size_t SizeApprox() const {
    // acquire: orders the tail_ load after this one, so the tail read is at least as new as the tail the
    // consumer had seen when it stored this head; tail - head then cannot go negative.
    const uint64_t head = head_.load(std::memory_order_acquire);
    // relaxed: only a count is needed, no slot contents are read.
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    const uint64_t size = tail - head;
    // The producer may have pushed more after head moved on; never report more than fits.
    return size > mask_ + 1 ? mask_ + 1 : static_cast<size_t>(size);
  }

  size_t capacity() const { return mask_ + 1; }

 private:
  // 128, not 64: x86 prefetches cache lines in adjacent pairs, so 64-byte separation still lets the two
  // sides disturb each other. (std::hardware_destructive_interference_size is 64 on gcc and warns when
  // used in a header.)
  static constexpr size_t kLine = 128;

  // Read-only after construction; shared by both sides without contention.
  alignas(kLine) const size_t mask_;
  T* const slots_;

  // Producer's line: the index it owns and its last view of the consumer's.
  alignas(kLine) std::atomic<uint64_t> tail_{0};
  uint64_t head_cache_ = 0;

  // Consumer's line. It needs no padding after it: alignas rounds sizeof up to a multiple of kLine, so
  // whatever follows the queue in memory starts on a fresh line.
  alignas(kLine) std::atomic<uint64_t> head_{0};
  uint64_t tail_cache_ = 0;
};

}  // namespace longlink::core
