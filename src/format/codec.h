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
//
// With `probe`, a sample decides first whether the frame is worth trying: its
// first and its middle 4 KiB are compressed alone, and unless one of them
// saves an eighth the frame is stored raw without compressing the rest. A
// writer calls it so after a frame that did not compress: on data that does
// not compress (encrypted or already compressed volumes, media, fio's
// buffers) that saves seven eighths of the compressor's time, and the frame
// after one that compresses again is compressed whole. The price: a frame
// whose sampled blocks are noise and whose others are not stays raw.
Codec compress_frame(Codec wanted, std::span<const std::byte> raw, std::vector<std::byte>* out, bool probe = false);

// Decompresses `stored` into `out`, which must be exactly the raw length.
Status decompress_frame(Codec codec, std::span<const std::byte> stored, std::span<std::byte> out);

}  // namespace portalbd
