// A provided-buffer ring (kernel 5.19): the shard's pool of receive buffers. Multishot recvs pick a buffer
// from it per completion, so a connection holds no receive buffer while idle; the shard hands each buffer
// back as soon as the bytes in it are parsed (or copied aside as a partial frame).
//
// The kernel takes buffers in ring order, so every buffer handed to it is soon written and resident. The
// ring therefore starts with a few buffers and grows (up to its capacity) only when receives find it
// empty: memory follows the receive load, not the configured maximum.
#pragma once

#include <liburing.h>

#include <cstdint>

#include "absl/status/status.h"

namespace longlink::core {

class BufRing {
 public:
  BufRing() = default;
  ~BufRing();
  BufRing(const BufRing&) = delete;
  BufRing& operator=(const BufRing&) = delete;

  // count (the capacity) must be a power of two, at most 32768; size is each buffer's byte size; initial
  // buffers are handed to the kernel at once.
  absl::Status Init(io_uring* ring, uint16_t group_id, uint32_t count, uint32_t size, uint32_t initial);

  // Hands up to n never-used buffers to the kernel (visible at the next Commit). Returns how many.
  uint32_t Grow(uint32_t n);
  uint32_t active() const { return active_; }
  uint32_t capacity() const { return count_; }

  uint8_t* Buffer(uint16_t bid) const { return base_ + static_cast<size_t>(bid) * size_; }
  uint32_t buffer_size() const { return size_; }
  uint16_t group_id() const { return group_id_; }

  // Returns a buffer to the ring; it becomes visible to the kernel at the next Commit().
  void Recycle(uint16_t bid) {
    io_uring_buf_ring_add(br_, Buffer(bid), size_, bid, mask_, pending_++);
  }
  // Returns the buffer a receive completion picked from this ring, if it carries one.
  void RecycleFrom(const io_uring_cqe* cqe) {
    if (cqe->flags & IORING_CQE_F_BUFFER) Recycle(static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
  }
  // Publishes recycled buffers to the kernel; once per completion round.
  void Commit() {
    if (pending_ != 0) {
      io_uring_buf_ring_advance(br_, pending_);
      pending_ = 0;
    }
  }

 private:
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  uint8_t* base_ = nullptr;
  size_t ring_bytes_ = 0;
  size_t data_bytes_ = 0;
  uint32_t count_ = 0;
  uint32_t active_ = 0;
  uint32_t size_ = 0;
  int mask_ = 0;
  int pending_ = 0;
  uint16_t group_id_ = 0;
};

}  // namespace longlink::core
