// ExtentState: what a range of blocks holds. The segment format stores it
// per entry, the index per extent, and NBD_CMD_BLOCK_STATUS (base:allocation)
// answers with it; so it lives here, below all three.
#pragma once

#include <cstdint>

namespace portalbd {

enum class ExtentState : uint8_t {
  kData = 0,  // bytes were written
  kZero = 1,  // explicitly zeroed: reads zero, allocated
  kHole = 2,  // never written or trimmed: reads zero, unallocated
};

}  // namespace portalbd
