// CRC-32C (Castagnoli), the checksum on every segment frame and footer.
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace portalbd {

// Extends `crc` (0 to start) over `data`.
uint32_t crc32c(std::span<const std::byte> data, uint32_t crc = 0);

}  // namespace portalbd
