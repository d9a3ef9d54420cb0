// How a thread that is not a shard (an admin HTTP thread, a messaging client's callback thread) hands work
// to a shard: a queue of closures owned by the shard runtime plus a wake-up, in the manner of Seastar's
// alien::run_on and uWebSockets' Loop::defer.
//
// Producers are any threads; the consumer is the shard. Post() appends under a mutex and writes the
// mailbox's eventfd only when no wake-up is already on its way, so a burst of posts costs one write. The
// shard keeps one read armed on that eventfd in its io_uring (IORING_OP_READ, kernel 5.6); the read's
// completion wakes an idle loop at once, which then runs everything queued and re-arms the read. Closures
// run on the shard thread, in the order they were posted by each thread.
//
// This path is for control work and for messages arriving from outside the process; shards talk to each
// other through the lock-free ShardGrid instead.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"

namespace longlink::core {

class Mailbox {
 public:
  using Call = absl::AnyInvocable<void() &&>;

  Mailbox() = default;
  ~Mailbox() {
    if (fd_ >= 0) close(fd_);
  }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  absl::Status Init() {
    // Blocking: io_uring completes a read of an O_NONBLOCK file with -EAGAIN instead of waiting for it.
    // Post never blocks on it (it writes only when no wake-up is pending, so the counter stays tiny).
    fd_ = eventfd(0, EFD_CLOEXEC);
    if (fd_ < 0) return absl::InternalError("eventfd failed");
    return absl::OkStatus();
  }
  // The descriptor the shard reads to learn that calls are waiting.
  int fd() const { return fd_; }

  // Any thread. Returns false once the mailbox is closed (the shard stopped): the call is dropped.
  bool Post(Call call) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return false;
      calls_.push_back(std::move(call));
    }
    // acq_rel: pairs with the consumer's release store of false in TakeAll. If this exchange sees false,
    // the consumer may already have taken the queue without this call, so it must be woken again; if it
    // sees true, a wake-up is pending and the consumer takes the queue (under the mutex) after it clears
    // the flag, so it will find this call.
    if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
      uint64_t one = 1;
      ssize_t n = write(fd_, &one, sizeof(one));
      (void)n;
    }
    return true;
  }

  // The shard thread: takes every queued call (after the eventfd read completed).
  void TakeAll(std::vector<Call>* out) {
    // release: ordered before the queue is taken below, so a producer whose exchange sees false has
    // queued after this point or will be found here (see Post).
    wake_pending_.store(false, std::memory_order_release);
    std::lock_guard<std::mutex> lock(mu_);
    out->swap(calls_);
  }

  // The shard thread, when its loop ends: later posts are refused, queued calls are dropped.
  void Close() {
    std::vector<Call> dropped;
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    dropped.swap(calls_);
  }

 private:
  int fd_ = -1;
  std::mutex mu_;
  std::vector<Call> calls_;
  bool closed_ = false;
  std::atomic<bool> wake_pending_{false};
};

}  // namespace longlink::core
