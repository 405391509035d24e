#include "fuse/seek_data.h"

#include <algorithm>

namespace portalbd::fuse {
namespace {

// Ask for at most this much per BLOCK_STATUS (the count field is 32 bits).
constexpr uint64_t kMaxStatusBytes = uint64_t{1} << 30;

}  // namespace

Result<uint64_t> seek_data_or_hole(uint64_t size, uint64_t offset, bool want_data, const ExtentSource& extents) {
  if (offset >= size) return Status::OutOfRange("offset is at or past the end of the image");
  uint64_t pos = offset;
  std::vector<Extent> batch;
  while (pos < size) {
    batch.clear();
    PBD_RETURN_IF_ERROR(extents(pos, std::min(size - pos, kMaxStatusBytes), &batch));
    for (const Extent& e : batch) {
      if (e.length == 0) return Status::IOError("block status returned an empty extent");
      if (e.hole != want_data) return pos;
      pos += std::min(e.length, size - pos);
      if (pos >= size) break;
    }
  }
  if (want_data) return Status::OutOfRange("no data after this offset");
  return size;
}

}  // namespace portalbd::fuse
