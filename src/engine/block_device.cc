#include "src/engine/block_device.h"

#include <algorithm>
#include <limits>

namespace portalbd {

Status BlockDevice::read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) {
  if (extents != nullptr) {
    extents->clear();
    const uint64_t end = offset + out.size();
    uint64_t pos = offset;
    while (pos < end) {
      std::vector<StatusExtent> part;
      PBD_RETURN_IF_ERROR(block_status(pos, end - pos, std::numeric_limits<size_t>::max(), &part));
      const uint64_t before = pos;
      for (const StatusExtent& e : part) {
        if (e.length == 0 || pos >= end) break;
        const uint64_t len = std::min(e.length, end - pos);
        if (!extents->empty() && extents->back().state == e.state) {
          extents->back().length += len;
        } else {
          extents->push_back({len, e.state});
        }
        pos += len;
      }
      // No progress: describe the rest as data, which is always truthful.
      if (pos == before) {
        extents->push_back({end - pos, ExtentState::kData});
        pos = end;
      }
    }
  }
  return read(offset, out);
}

}  // namespace portalbd
