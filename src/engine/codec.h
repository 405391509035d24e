// Frame compression: lz4 (default), zstd, or none.
// A frame is stored raw when compressing does not make it smaller, so
// decode() always looks at the codec recorded for that frame.
// Thread-safety: pure functions (codec contexts are per call; the scratch
// buffer compress_frame() compresses into is per thread).
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

// Appends the compressed form of `raw` to *out and returns the codec actually
// used (kNone when compression would not save space).
Codec compress_frame(Codec wanted, std::span<const std::byte> raw, std::vector<std::byte>* out);

// Decompresses `stored` into `out`, which must be exactly the raw length.
Status decompress_frame(Codec codec, std::span<const std::byte> stored, std::span<std::byte> out);

}  // namespace portalbd
