#include "core/shard_grid.h"

namespace longlink::core {

ShardGrid::ShardGrid(uint32_t shards, size_t queue_capacity)
    : shards_(shards), ring_fds_(new std::atomic<int>[shards]) {
  cells_.reserve(static_cast<size_t>(shards) * shards);
  for (uint32_t i = 0; i < shards * shards; ++i) {
    // Diagonal cells are never used: a shard calls itself directly.
    bool diagonal = (i / shards) == (i % shards);
    cells_.push_back(std::make_unique<SpscQueue<ShardMessage>>(diagonal ? 2 : queue_capacity));
  }
  for (uint32_t i = 0; i < shards; ++i) ring_fds_[i].store(-1, std::memory_order_relaxed);
}

ShardOutbox::ShardOutbox(ShardGrid* grid, uint32_t self)
    : grid_(grid), self_(self), dirty_(grid->shards(), 0), overflow_(grid->shards()) {}

bool ShardOutbox::Post(uint32_t to, const ShardMessage& m) {
  if (!dirty_[to]) {
    dirty_[to] = 1;
    dirty_list_.push_back(to);
  }
  // Keep order: once something waits in overflow, later messages queue behind it.
  if (overflow_[to].empty() && grid_->Cell(self_, to).TryPush(m)) return true;
  overflow_[to].push_back(m);
  ++overflow_count_;
  return false;
}

void ShardOutbox::Flush(Ring* ring, uint64_t wake_user_data) {
  if (overflow_count_ != 0) {
    for (uint32_t to = 0; to < overflow_.size(); ++to) {
      auto& q = overflow_[to];
      if (q.empty()) continue;
      SpscQueue<ShardMessage>& cell = grid_->Cell(self_, to);
      while (!q.empty() && cell.TryPush(q.front())) {
        q.pop_front();
        --overflow_count_;
      }
      if (!dirty_[to]) {
        dirty_[to] = 1;
        dirty_list_.push_back(to);
      }
    }
  }
  for (uint32_t to : dirty_list_) {
    dirty_[to] = 0;
    int fd = grid_->RingFd(to);
    if (fd < 0) continue;
    io_uring_sqe* sqe = ring->Sqe();
    io_uring_prep_msg_ring(sqe, fd, 0, wake_user_data, 0);
    // The sender needs no completion for a successful wake.
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
    ++wakes_sent_;
  }
  dirty_list_.clear();
}

}  // namespace longlink::core
