#include "src/format/checkpoint_codec.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

namespace portalbd {

Result<std::vector<std::byte>> encode_checkpoint(std::span<const std::byte> index_file) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (cctx == nullptr) return Status::IOError("compress checkpoint: out of memory");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
  std::vector<std::byte> packed(ZSTD_compressBound(index_file.size()));
  size_t n = ZSTD_compress2(cctx.get(), packed.data(), packed.size(), index_file.data(), index_file.size());
  if (ZSTD_isError(n)) return Status::IOError(std::string("compress checkpoint: ") + ZSTD_getErrorName(n));
  packed.resize(n);
  return packed;
}

Result<DecodedCheckpoint> decode_checkpoint(std::span<const std::byte> stored) {
  // A zstd frame: magic 0xFD2FB528 (little-endian), then the frame header
  // descriptor, whose bit 2 says a content checksum ends the frame.
  constexpr unsigned char kMagic[4] = {0x28, 0xB5, 0x2F, 0xFD};
  if (stored.size() < 5 || std::memcmp(stored.data(), kMagic, 4) != 0) return Status::Corruption("not a zstd frame");
  const unsigned long long raw_size = ZSTD_getFrameContentSize(stored.data(), stored.size());
  if (raw_size == ZSTD_CONTENTSIZE_ERROR || raw_size == ZSTD_CONTENTSIZE_UNKNOWN || raw_size > (64ull << 30)) {
    return Status::Corruption("the frame does not state a plausible size");
  }
  // The whole object is one frame: a truncated one, or bytes after it, is damage.
  const size_t frame = ZSTD_findFrameCompressedSize(stored.data(), stored.size());
  if (ZSTD_isError(frame) || frame != stored.size()) {
    return Status::Corruption(ZSTD_isError(frame) ? std::string("truncated: ") + ZSTD_getErrorName(frame)
                                                  : "trailing bytes after the frame");
  }
  DecodedCheckpoint out;
  out.checksummed = (static_cast<unsigned>(stored[4]) & 0x04) != 0;
  // The size the header states is covered by no checksum. Up to 64 times
  // the object (real indexes compress 3-10x) it is trusted: one buffer, one
  // call. Beyond that the frame is streamed into a buffer that grows with
  // what it really holds, so a damaged size cannot make us ask for 64 GiB.
  const uint64_t plausible = std::max<uint64_t>(16ull << 20, 64 * uint64_t{stored.size()});
  if (raw_size <= plausible) {
    out.index_file.resize(raw_size);
    const size_t n = ZSTD_decompress(out.index_file.data(), out.index_file.size(), stored.data(), stored.size());
    if (ZSTD_isError(n)) return Status::Corruption(std::string("does not decompress: ") + ZSTD_getErrorName(n));
    if (n != raw_size) return Status::Corruption("decompresses to fewer bytes than its frame states");
    return out;
  }
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (dctx == nullptr) return Status::IOError("decompress checkpoint: out of memory");
  out.index_file.resize(plausible);
  ZSTD_inBuffer in{stored.data(), stored.size(), 0};
  uint64_t produced = 0;
  std::byte spill;  // room for one byte more than stated: finds a frame that holds more
  for (;;) {
    if (produced == out.index_file.size() && produced < raw_size) {
      out.index_file.resize(std::min<uint64_t>(raw_size, 2 * produced));
    }
    const bool full = produced == raw_size;
    ZSTD_outBuffer o{full ? &spill : out.index_file.data() + produced, full ? 1 : out.index_file.size() - produced, 0};
    const size_t left = ZSTD_decompressStream(dctx.get(), &o, &in);
    if (ZSTD_isError(left)) return Status::Corruption(std::string("does not decompress: ") + ZSTD_getErrorName(left));
    if (full && o.pos != 0) return Status::Corruption("decompresses to more bytes than its frame states");
    produced += o.pos;
    if (left == 0) break;  // the frame ended, its checksum verified
    if (in.pos == in.size && o.pos == 0) return Status::Corruption("truncated: the frame does not end");
  }
  if (produced != raw_size) return Status::Corruption("decompresses to fewer bytes than its frame states");
  return out;
}

}  // namespace portalbd
