// libFuzzer target: the segment decoder (src/format/segment.h). A segment
// object comes back from object storage, which may hand us anything (bit rot,
// a truncated upload, another program's object under our prefix): parsing and
// frame decoding must answer kCorruption, never crash, over-read or allocate
// without bound (DESIGN invariant 7).
//
// Every input is tried as a whole object (parse_segment_object, then
// decode_frame of each frame it lists), as a trailer, and as a bare footer.
// Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "src/format/segment.h"
#include "src/util/crc32c.h"

using namespace portalbd;

namespace {

uint64_t get_le(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(p[i]);
  return v;
}
void put_le(std::byte* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = std::byte(static_cast<uint8_t>(v >> (8 * i)));
}

// The input with its footer and trailer checksums made right, so that the
// fuzzer reaches the footer parser and the frame decoders through the same
// entry point the engine uses, instead of stopping at a checksum mismatch.
std::vector<std::byte> with_fixed_checksums(std::span<const std::byte> in) {
  std::vector<std::byte> o(in.begin(), in.end());
  if (o.size() < kSegmentTrailerBytes) return o;
  std::byte* t = o.data() + o.size() - kSegmentTrailerBytes;
  const uint64_t footer_offset = get_le(t, 8);
  const uint64_t footer_len = get_le(t + 8, 4);
  const uint64_t limit = o.size() - kSegmentTrailerBytes;
  if (footer_offset <= limit && footer_len <= limit - footer_offset) {
    put_le(t + 12, crc32c(std::span<const std::byte>(o).subspan(footer_offset, footer_len)), 4);
  }
  put_le(t + 24, crc32c(std::span<const std::byte>(t, 24)), 8);
  return o;
}

void try_object(std::span<const std::byte> in) {
  auto footer = parse_segment_object(in);
  if (!footer.ok()) return;
  std::vector<std::byte> out;
  for (const FrameRef& ref : footer->frames) {
    if (ref.offset > in.size() || ref.stored_len > in.size() - ref.offset) continue;  // a GET would be short
    Status st = decode_frame(ref, in.subspan(ref.offset, ref.stored_len), &out);
    if (st.ok() && out.size() != ref.raw_len) __builtin_trap();  // decoded a frame of the wrong size
    // The same frame with its checksum made right: reaches the codec.
    FrameRef fixed = ref;
    fixed.crc = crc32c(in.subspan(ref.offset, ref.stored_len));
    st = decode_frame(fixed, in.subspan(ref.offset, ref.stored_len), &out);
    if (st.ok() && out.size() != ref.raw_len) __builtin_trap();
  }
  (void)footer->data_bytes();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);

  try_object(in);
  const std::vector<std::byte> fixed = with_fixed_checksums(in);
  try_object(fixed);

  if (size >= kSegmentTrailerBytes) {
    uint64_t footer_offset = 0;
    uint32_t footer_len = 0;
    (void)parse_segment_trailer(in.subspan(size - kSegmentTrailerBytes), &footer_offset, &footer_len);
  }
  (void)parse_segment_footer(in, 0);

  // A frame on its own: the first byte picks the codec, the rest is stored bytes.
  if (size >= 1) {
    FrameRef ref;
    ref.codec = static_cast<Codec>(data[0] % 4);
    ref.stored_len = static_cast<uint32_t>(size - 1);
    ref.raw_len = ((data[0] >> 2) % kFrameBlocks + 1) * kBlockSize;  // as parse_segment_footer allows
    ref.crc = crc32c(in.subspan(1));
    std::vector<std::byte> out;
    Status st = decode_frame(ref, in.subspan(1), &out);
    if (st.ok() && out.size() != ref.raw_len) __builtin_trap();
  }
  return 0;
}
