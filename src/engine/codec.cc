#include "src/engine/codec.h"

#include <lz4.h>
#include <zstd.h>

#include <cstring>

namespace portalbd {

Result<Codec> codec_from_name(const std::string& name) {
  if (name == "lz4") return Codec::kLz4;
  if (name == "zstd") return Codec::kZstd;
  if (name == "none") return Codec::kNone;
  return Status::InvalidArgument("unknown compression '" + name + "' (expected lz4, zstd or none)");
}

const char* codec_name(Codec c) {
  switch (c) {
    case Codec::kNone: return "none";
    case Codec::kLz4: return "lz4";
    case Codec::kZstd: return "zstd";
  }
  return "unknown";
}

Codec compress_frame(Codec wanted, std::span<const std::byte> raw, std::vector<std::byte>* out) {
  // Compress into a per-thread scratch buffer and append only the bytes
  // produced: growing `out` by the compressor's bound would zero-fill (and
  // page in) a frame's worth of memory per frame, and then shrink it again.
  thread_local std::vector<std::byte> scratch;
  size_t n = 0;
  if (wanted == Codec::kLz4) {
    const int bound = LZ4_compressBound(static_cast<int>(raw.size()));
    if (scratch.size() < static_cast<size_t>(bound)) scratch.resize(static_cast<size_t>(bound));
    const int got = LZ4_compress_default(reinterpret_cast<const char*>(raw.data()),
                                         reinterpret_cast<char*>(scratch.data()), static_cast<int>(raw.size()), bound);
    n = got > 0 ? static_cast<size_t>(got) : 0;
  } else if (wanted == Codec::kZstd) {
    const size_t bound = ZSTD_compressBound(raw.size());
    if (scratch.size() < bound) scratch.resize(bound);
    const size_t got = ZSTD_compress(scratch.data(), bound, raw.data(), raw.size(), 3);
    n = ZSTD_isError(got) ? 0 : got;
  }
  if (n > 0 && n < raw.size()) {
    out->insert(out->end(), scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(n));
    return wanted;
  }
  out->insert(out->end(), raw.begin(), raw.end());
  return Codec::kNone;
}

Status decompress_frame(Codec codec, std::span<const std::byte> stored, std::span<std::byte> out) {
  switch (codec) {
    case Codec::kNone:
      if (stored.size() != out.size()) return Status::Corruption("raw frame has the wrong length");
      std::memcpy(out.data(), stored.data(), out.size());
      return Status::OK();
    case Codec::kLz4: {
      int n = LZ4_decompress_safe(reinterpret_cast<const char*>(stored.data()), reinterpret_cast<char*>(out.data()),
                                  static_cast<int>(stored.size()), static_cast<int>(out.size()));
      if (n < 0 || static_cast<size_t>(n) != out.size()) return Status::Corruption("lz4 frame does not decode");
      return Status::OK();
    }
    case Codec::kZstd: {
      size_t n = ZSTD_decompress(out.data(), out.size(), stored.data(), stored.size());
      if (ZSTD_isError(n) || n != out.size()) return Status::Corruption("zstd frame does not decode");
      return Status::OK();
    }
  }
  return Status::Corruption("unknown codec " + std::to_string(static_cast<int>(codec)));
}

}  // namespace portalbd
