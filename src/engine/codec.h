// Frame compression: lz4 (default), zstd, or none.
// A frame is stored raw unless compressing saves at least an eighth of it (the
// rule ZFS uses): a frame that shrinks by a few percent would cost a decode on
// every cache miss for almost no space, and a raw frame is read where it lies.
// decode() always looks at the codec recorded for that frame.
// Thread-safety: safe concurrently; the codec contexts and the scratch
// buffer compress_frame() compresses into are per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/util/status.h"

namespace portalbd {

enum class Codec : uint8_t { kNone = 0, kLz4 = 1, kZstd = 2 };

// "lz4" | "zstd" | "none" -> Codec; kInvalidArgument otherwise.
Result<Codec> codec_from_name(const std::string& name);
const char* codec_name(Codec c);

// Compression is kept only when it saves at least 1/kMinSavingsDivisor.
inline constexpr size_t kMinSavingsDivisor = 8;

// Appends the compressed form of `raw` to *out and returns the codec actually
// used (kNone when it would not save enough, see above).
Codec compress_frame(Codec wanted, std::span<const std::byte> raw, std::vector<std::byte>* out);

// Decompresses `stored` into `out`, which must be exactly the raw length.
Status decompress_frame(Codec codec, std::span<const std::byte> stored, std::span<std::byte> out);

}  // namespace portalbd
