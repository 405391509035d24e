#include "src/engine/block_device.h"

#include <limits>

namespace portalbd {

Status BlockDevice::read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) {
  if (extents != nullptr) {
    const uint64_t end = offset + out.size();
    ExtentRun run(extents, offset);
    while (run.cursor() < end) {
      std::vector<StatusExtent> part;
      PBD_RETURN_IF_ERROR(block_status(run.cursor(), end - run.cursor(), std::numeric_limits<size_t>::max(), &part));
      const uint64_t before = run.cursor();
      for (const StatusExtent& e : part) {
        if (e.length == 0 || run.cursor() >= end) break;
        run.emit(e.length >= end - run.cursor() ? end : run.cursor() + e.length, e.state);
      }
      // No progress: describe the rest as data, which is always truthful.
      if (run.cursor() == before) run.emit(end, ExtentState::kData);
    }
  }
  return read(offset, out);
}

}  // namespace portalbd
