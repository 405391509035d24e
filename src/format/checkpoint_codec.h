// The encoding of index checkpoints in object storage
// (checkpoints/<seq>.sqlite.zst): the SQLite file of the index, compressed as
// one zstd frame that carries the content size and a checksum of the content
// (zstd's content checksum, the low 32 bits of its xxhash64), which every
// decode verifies. A damaged checkpoint is therefore found before it is
// restored, and skipped (Volume::restore_checkpoint_if_fresh). Checkpoints
// written before the checksum (no checksum flag in their frame header) are
// still read; only decompression and SQLite itself can then notice damage.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "src/util/status.h"

namespace portalbd {

// The stored object for an index file's bytes.
Result<std::vector<std::byte>> encode_checkpoint(std::span<const std::byte> index_file);

struct DecodedCheckpoint {
  std::vector<std::byte> index_file;
  bool checksummed = false;  // false: written before checkpoints carried a checksum
};
// The index file's bytes, verified. kCorruption when the object is not a
// whole checkpoint (truncated, not zstd, checksum mismatch, trailing bytes).
Result<DecodedCheckpoint> decode_checkpoint(std::span<const std::byte> stored);

}  // namespace portalbd
