// One io_uring per shard thread, created on that thread.
//
// Setup prefers SINGLE_ISSUER|DEFER_TASKRUN (kernel 6.1): completions are processed only when the owning
// thread waits, which batches task work and avoids interrupting the shard. It falls back to COOP_TASKRUN
// (5.19) and then to a plain ring, and reports which mode it got so the gateway can export it.
//
// Also owns the shard's sparse fixed-file table (5.19 for IORING_FILE_INDEX_ALLOC with accept/socket):
// connections live there as direct descriptors, which do not count against RLIMIT_NOFILE.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

namespace longlink::core {

enum class RingMode : uint8_t { kDeferTaskrun = 0, kCoopTaskrun = 1, kPlain = 2 };
std::string_view RingModeName(RingMode m);

struct RingOptions {
  uint32_t sq_entries = 4096;
  uint32_t cq_entries = 16384;
  uint32_t fixed_files = 0;  // sparse fixed-file table size, 0 for none
  bool force_plain = false;  // for tests of the fallback path
};

class Ring {
 public:
  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Must be called on the thread that will use the ring.
  absl::Status Init(const RingOptions& opts);

  // An SQE, submitting queued ones first if the SQ is full. Never returns null while the ring is healthy.
  io_uring_sqe* Sqe();
  // Submits and waits for at least one completion or until timeout_ns passes (0: don't wait).
  int SubmitAndWait(uint64_t timeout_ns);
  int Submit() { return io_uring_submit(&ring_); }

  io_uring* raw() { return &ring_; }
  int fd() const { return ring_.ring_fd; }
  RingMode mode() const { return mode_; }
  uint32_t fixed_files() const { return fixed_files_; }

 private:
  io_uring ring_{};
  bool inited_ = false;
  RingMode mode_ = RingMode::kPlain;
  uint32_t fixed_files_ = 0;
};

// Prepares an IORING_OP_MSG_RING that moves fixed file `src_slot` of this ring into the target ring's
// fixed-file table at a slot the kernel allocates (kernel 6.0). The target sees a completion with
// user_data `target_user_data` and res = the new slot; this ring sees one with res >= 0 on success.
void PrepMsgRingSendFd(io_uring_sqe* sqe, int target_ring_fd, uint32_t src_slot, uint64_t target_user_data);

// Closes fixed file `slot` (close_direct, kernel 5.15); the completion carries `user_data`.
void PrepCloseDirect(Ring& ring, uint32_t slot, uint64_t user_data);

// Closes a connected fixed file: IORING_OP_SHUTDOWN (kernel 5.11) ends its outstanding receive (EOF) and
// send at once, hard-linked to close_direct so the close runs whatever the shutdown returned. Only the
// close completes with `close_user_data` (the shutdown's completion carries 0). Cancelling by descriptor
// (ASYNC_CANCEL_FD) instead walks every request of the ring, which makes closing many connections at once
// quadratic.
void PrepShutdownAndClose(Ring& ring, uint32_t slot, uint64_t close_user_data);

// Installs fixed file `slot` into the process's descriptor table (IORING_OP_FIXED_FD_INSTALL, kernel 6.8;
// liburing 2.3 has no helper): the completion's res is a regular O_CLOEXEC descriptor of the same socket, for
// the calls that only take one (getpeername). The caller closes it.
void PrepFixedFdInstall(Ring& ring, uint32_t slot, uint64_t user_data);

}  // namespace longlink::core
