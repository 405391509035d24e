// seek_data_or_hole(): lseek(SEEK_DATA / SEEK_HOLE) over NBD block status, so
// that `cp --sparse=always` and `qemu-img convert` skip a snapshot's holes.
//
// Thread-safety: a pure function of its arguments; `extents` is called on
// the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "fuse/nbd_connection.h"
#include "src/util/status.h"

namespace portalbd::fuse {

// Appends the extents that start at `offset` (at least one, or an error).
using ExtentSource = std::function<Status(uint64_t offset, uint64_t count, std::vector<Extent>* out)>;

// The first offset >= `offset` that is data (want_data) or a hole. The end of
// the image counts as a hole. OutOfRange (ENXIO) when `offset` >= size, or
// when there is no data at or after `offset`.
Result<uint64_t> seek_data_or_hole(uint64_t size, uint64_t offset, bool want_data, const ExtentSource& extents);

}  // namespace portalbd::fuse
