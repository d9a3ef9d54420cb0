// CRC-32C (Castagnoli), the checksum of every log record. Uses the SSE4.2 crc32 instruction when the CPU
// has it and a table otherwise; both give the same values (RFC 3720 test vectors in crc32c_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>

namespace longlink::gateway::local {

// Extends `crc` (0 to start) over n bytes.
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

}  // namespace longlink::gateway::local
