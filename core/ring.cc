#include "core/ring.h"

#include <sys/socket.h>

#include <cstring>

#include "core/status.h"

namespace longlink::core {

std::string_view RingModeName(RingMode m) {
  switch (m) {
    case RingMode::kDeferTaskrun:
      return "defer_taskrun";
    case RingMode::kCoopTaskrun:
      return "coop_taskrun";
    case RingMode::kPlain:
      return "plain";
  }
  return "unknown";
}

Ring::~Ring() {
  if (inited_) io_uring_queue_exit(&ring_);
}

absl::Status Ring::Init(const RingOptions& opts) {
  struct Attempt {
    uint32_t flags;
    RingMode mode;
  };
  const Attempt attempts[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL, RingMode::kDeferTaskrun},
      {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL, RingMode::kCoopTaskrun},
      {0, RingMode::kPlain},
  };
  int ret = -EINVAL;
  for (const Attempt& a : attempts) {
    if (opts.force_plain && a.mode != RingMode::kPlain) continue;
    io_uring_params p;
    std::memset(&p, 0, sizeof(p));
    p.flags = a.flags | IORING_SETUP_CQSIZE;
    p.cq_entries = opts.cq_entries;
    ret = io_uring_queue_init_params(opts.sq_entries, &ring_, &p);
    if (ret == 0) {
      mode_ = a.mode;
      break;
    }
  }
  if (ret < 0) return ErrnoStatus(ret, "io_uring_queue_init");
  inited_ = true;
  if (opts.fixed_files > 0) {
    ret = io_uring_register_files_sparse(&ring_, opts.fixed_files);
    if (ret < 0) {
      return ErrnoStatus(ret, absl::StrCat("registering a sparse fixed-file table of ", opts.fixed_files,
                                           " slots (it may not exceed the open-files limit)"));
    }
    fixed_files_ = opts.fixed_files;
  }
  return absl::OkStatus();
}

io_uring_sqe* Ring::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

int Ring::SubmitAndWait(uint64_t timeout_ns) {
  if (timeout_ns == 0) return io_uring_submit(&ring_);
  __kernel_timespec ts;
  ts.tv_sec = static_cast<int64_t>(timeout_ns / 1000000000ull);
  ts.tv_nsec = static_cast<int64_t>(timeout_ns % 1000000000ull);
  io_uring_cqe* cqe = nullptr;
  return io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
}

void PrepMsgRingSendFd(io_uring_sqe* sqe, int target_ring_fd, uint32_t src_slot, uint64_t target_user_data) {
  // liburing 2.3 has no helper for IORING_MSG_SEND_FD, so the SQE is filled in by hand.
  io_uring_prep_rw(IORING_OP_MSG_RING, sqe, target_ring_fd, reinterpret_cast<void*>(IORING_MSG_SEND_FD), 0,
                   target_user_data);
  sqe->addr3 = src_slot;
  sqe->file_index = IORING_FILE_INDEX_ALLOC;
}

void PrepCloseDirect(Ring& ring, uint32_t slot, uint64_t user_data) {
  io_uring_sqe* sqe = ring.Sqe();
  io_uring_prep_close_direct(sqe, slot);
  io_uring_sqe_set_data64(sqe, user_data);
}

void PrepShutdownAndClose(Ring& ring, uint32_t slot, uint64_t close_user_data) {
  io_uring_sqe* sqe = ring.Sqe();
  io_uring_prep_shutdown(sqe, static_cast<int>(slot), SHUT_RDWR);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
  io_uring_sqe_set_data64(sqe, 0);
  PrepCloseDirect(ring, slot, close_user_data);
}

void PrepFixedFdInstall(Ring& ring, uint32_t slot, uint64_t user_data) {
  constexpr uint8_t kOpFixedFdInstall = 54;  // IORING_OP_FIXED_FD_INSTALL in kernel 6.8's uapi
  io_uring_sqe* sqe = ring.Sqe();
  std::memset(sqe, 0, sizeof(*sqe));
  sqe->opcode = kOpFixedFdInstall;
  sqe->fd = static_cast<int32_t>(slot);
  sqe->flags = IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, user_data);
}

}  // namespace longlink::core
