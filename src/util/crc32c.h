// CRC-32C (Castagnoli), the checksum on every segment frame and footer.
// Computed by ISA-L (Intel's storage acceleration library, libisal).
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace portalbd {

// Extends `crc` (0 to start) over `data`.
uint32_t crc32c(std::span<const std::byte> data, uint32_t crc = 0);

}  // namespace portalbd
