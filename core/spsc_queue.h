// A bounded single-producer/single-consumer queue: one cell of the N x N grid that shards use to pass
// messages to each other (see core/shard.h). Interface contract; implementation to be completed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace longlink::core {

// T must be trivially copyable. Capacity is rounded up to a power of two.
template <class T>
class SpscQueue {
 public:
  explicit SpscQueue(size_t capacity);
  ~SpscQueue();
  SpscQueue(const SpscQueue&) = delete;
  SpscQueue& operator=(const SpscQueue&) = delete;

  // Producer thread only. False when full.
  bool TryPush(const T& v);
  // Consumer thread only. False when empty.
  bool TryPop(T* out);
  // Consumer thread only: pops up to max items into out, returns how many.
  size_t PopBatch(T* out, size_t max);
  // Either thread; an approximation while the other side runs (for the queue-depth gauge).
  size_t SizeApprox() const;
  size_t capacity() const;
};

}  // namespace longlink::core
