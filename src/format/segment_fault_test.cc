// Corrupt segment objects (a fault of the storage itself): the decoder must
// refuse a footer whose records point outside the object, even when its
// checksums are right (a bug elsewhere, or a foreign object under our prefix).
// Found with tests/fuzz/segment_fuzz.cc's bounds reasoning.
#include <doctest/doctest.h>

#include <cstring>
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

// A one-frame segment whose frame 0 record says (offset, stored_len), with the
// footer and trailer checksums recomputed so only the bounds check can refuse it.
std::vector<std::byte> segment_with_frame_at(uint64_t offset, uint32_t stored_len) {
  SegmentBuilder b(7, 1, Codec::kNone, 0);
  std::vector<std::byte> block(kBlockSize, std::byte{0x42});
  b.add_data(0, block);
  std::vector<std::byte> o = b.finish();
  std::byte* t = o.data() + o.size() - kSegmentTrailerBytes;
  const uint64_t footer_offset = get_le(t, 8);
  const uint64_t footer_len = get_le(t + 8, 4);
  std::byte* frame0 = o.data() + footer_offset + 80;  // after the footer header (format version 4)
  put_le(frame0, offset, 8);
  put_le(frame0 + 8, stored_len, 4);
  put_le(t + 12, crc32c(std::span<const std::byte>(o).subspan(footer_offset, footer_len)), 4);
  put_le(t + 24, crc32c(std::span<const std::byte>(t, 24)), 8);
  return o;
}

}  // namespace

TEST_SUITE("engine.segment_fault") {
  TEST_CASE("a frame record past the footer is refused") {
    auto ok = parse_segment_object(segment_with_frame_at(0, kBlockSize));
    REQUIRE(ok.ok());  // the untouched record parses: the fixture is right
    auto past = parse_segment_object(segment_with_frame_at(1 << 20, kBlockSize));
    CHECK(past.status().is(Status::Code::kCorruption));
  }

  // Regression: the bounds check once summed offset + length in u64, which an
  // offset near 2^64 wrapped past the check.
  TEST_CASE("a frame record whose offset + length wraps around is refused") {
    auto wrapped = parse_segment_object(segment_with_frame_at(~uint64_t{0} - 15, 32));
    CHECK(wrapped.status().is(Status::Code::kCorruption));
  }
}
