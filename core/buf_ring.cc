#include "core/buf_ring.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "core/status.h"

namespace longlink::core {

BufRing::~BufRing() {
  if (br_ != nullptr) {
    io_uring_unregister_buf_ring(ring_, group_id_);
    munmap(br_, ring_bytes_);
  }
  if (base_ != nullptr) munmap(base_, data_bytes_);
}

absl::Status BufRing::Init(io_uring* ring, uint16_t group_id, uint32_t count, uint32_t size, uint32_t initial) {
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) {
    return absl::InvalidArgumentError(absl::StrCat("buffer count must be a power of two <= 32768, got ", count));
  }
  if (size < 512) return absl::InvalidArgumentError(absl::StrCat("buffer size must be >= 512, got ", size));
  ring_ = ring;
  group_id_ = group_id;
  count_ = count;
  size_ = size;
  mask_ = io_uring_buf_ring_mask(count);
  ring_bytes_ = sizeof(io_uring_buf) * count;
  void* r = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (r == MAP_FAILED) return ErrnoStatus(errno, "mmap buffer ring");
  br_ = static_cast<io_uring_buf_ring*>(r);
  io_uring_buf_ring_init(br_);
  io_uring_buf_reg reg;
  std::memset(&reg, 0, sizeof(reg));
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = group_id;
  int ret = io_uring_register_buf_ring(ring, &reg, 0);
  if (ret < 0) {
    munmap(br_, ring_bytes_);
    br_ = nullptr;
    return ErrnoStatus(ret, "io_uring_register_buf_ring (kernel 5.19+)");
  }
  data_bytes_ = static_cast<size_t>(count) * size;
  void* d = mmap(nullptr, data_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (d == MAP_FAILED) return ErrnoStatus(errno, "mmap receive buffers");
  base_ = static_cast<uint8_t*>(d);
  Grow(initial == 0 ? count : initial);
  Commit();
  return absl::OkStatus();
}

uint32_t BufRing::Grow(uint32_t n) {
  uint32_t add = std::min(n, count_ - active_);
  for (uint32_t i = 0; i < add; ++i) Recycle(static_cast<uint16_t>(active_ + i));
  active_ += add;
  return add;
}

}  // namespace longlink::core
