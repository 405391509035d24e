#include "src/format/codec.h"

#include <lz4.h>
#include <zstd.h>

#include <cstring>
#include <memory>

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

namespace {

// Per-thread room for one compressed frame. Compressing straight into *out
// would mean resizing it by the worst-case bound first, and vector::resize
// zero-fills that bound on every frame: for a 64 MiB segment that was as much
// memset as there is data, the largest cost of an upload (perf, s3 bench).
std::span<std::byte> scratch(size_t bytes) {
  thread_local std::vector<std::byte> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return {buffer.data(), bytes};
}

// Per-thread codec contexts. Setting one up per frame is what made small
// frames expensive: LZ4_compress_default() clears a 16 KiB hash table on
// every call (four times the work of compressing a 4 KiB frame), and
// ZSTD_compress() allocates a whole context. A stream reset with
// LZ4_resetStream_fast() costs almost nothing.
LZ4_stream_t* lz4_stream() {
  thread_local std::unique_ptr<LZ4_stream_t, int (*)(LZ4_stream_t*)> stream(LZ4_createStream(), LZ4_freeStream);
  return stream.get();
}
ZSTD_CCtx* zstd_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  return ctx.get();
}
ZSTD_DCtx* zstd_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  return ctx.get();
}

// Whether `stored` compressed bytes are worth a decode for `raw` bytes.
bool worth_it(size_t stored, size_t raw) { return stored <= raw - raw / kMinSavingsDivisor; }

// Compresses `raw` into per-thread scratch with `codec` (kLz4 or kZstd) and
// returns the compressed bytes, empty when that would not be worth it.
std::span<const std::byte> try_compress(Codec codec, std::span<const std::byte> raw) {
  if (codec == Codec::kLz4) {
    int bound = LZ4_compressBound(static_cast<int>(raw.size()));
    auto room = scratch(static_cast<size_t>(bound));
    // A fast reset, then one block with no dictionary: an independent block
    // that LZ4_decompress_safe() decodes alone.
    LZ4_stream_t* stream = lz4_stream();
    LZ4_resetStream_fast(stream);
    int n = LZ4_compress_fast_continue(stream, reinterpret_cast<const char*>(raw.data()),
                                       reinterpret_cast<char*>(room.data()), static_cast<int>(raw.size()), bound, 1);
    if (n > 0 && worth_it(static_cast<size_t>(n), raw.size())) return room.first(static_cast<size_t>(n));
  } else if (codec == Codec::kZstd) {
    auto room = scratch(ZSTD_compressBound(raw.size()));
    size_t n = ZSTD_compressCCtx(zstd_cctx(), room.data(), room.size(), raw.data(), raw.size(), 3);
    if (!ZSTD_isError(n) && worth_it(n, raw.size())) return room.first(n);
  }
  return {};
}

// The probe: whether the first or the middle 4 KiB of `raw` compresses.
bool sample_compresses(Codec codec, std::span<const std::byte> raw) {
  constexpr size_t kSample = 4096;
  if (raw.size() <= 2 * kSample) return true;  // small enough to just try
  const size_t middle = raw.size() / 2 / kSample * kSample;
  return !try_compress(codec, raw.subspan(0, kSample)).empty() ||
         !try_compress(codec, raw.subspan(middle, kSample)).empty();
}

}  // namespace

Codec compress_frame(Codec wanted, std::span<const std::byte> raw, std::vector<std::byte>* out, bool probe) {
  if (wanted != Codec::kNone && (!probe || sample_compresses(wanted, raw))) {
    auto packed = try_compress(wanted, raw);
    if (!packed.empty()) {
      out->insert(out->end(), packed.begin(), packed.end());
      return wanted;
    }
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
      size_t n = ZSTD_decompressDCtx(zstd_dctx(), out.data(), out.size(), stored.data(), stored.size());
      if (ZSTD_isError(n) || n != out.size()) return Status::Corruption("zstd frame does not decode");
      return Status::OK();
    }
  }
  return Status::Corruption("unknown codec " + std::to_string(static_cast<int>(codec)));
}

}  // namespace portalbd
