// Facts about this process that both programs report: resident memory (for bytes per connection) and
// open descriptors against their limit (io_uring direct descriptors are not among them).
#pragma once

#include <cstdint>

namespace longlink::core {

// Resident memory, from /proc/self/statm; 0 if it cannot be read.
uint64_t ResidentBytes();
// Open file descriptors, counted in /proc/self/fd; 0 if it cannot be read.
uint64_t OpenFds();
// The soft RLIMIT_NOFILE (2^20 when unlimited).
uint64_t MaxFds();

}  // namespace longlink::core
