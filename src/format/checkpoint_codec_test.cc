// Checkpoint encoding: a checksum of the index travels with it, so damage is
// found before a restore; checkpoints written before it are still read.
#include "src/format/checkpoint_codec.h"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <zstd.h>

#include <array>

using namespace portalbd;

namespace {

std::vector<std::byte> index_like(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>((i * 7) % 251 + (i >> 10)));
  return v;
}

}  // namespace

TEST_SUITE("engine.checkpoint_codec") {
  TEST_CASE("a checkpoint round-trips with its checksum") {
    const auto raw = index_like(100000);
    auto packed = encode_checkpoint(raw);
    REQUIRE(packed.ok());
    auto back = decode_checkpoint(*packed);
    REQUIRE_MESSAGE(back.ok(), back.status().ToString());
    CHECK(back->checksummed);
    CHECK(back->index_file == raw);
  }

  TEST_CASE("a flipped bit, a truncation or trailing bytes are corruption") {
    const auto raw = index_like(100000);
    auto packed = encode_checkpoint(raw);
    REQUIRE(packed.ok());
    for (size_t at : {size_t{20}, packed->size() / 2, packed->size() - 2}) {
      auto flipped = *packed;
      flipped[at] ^= std::byte{0x10};
      CHECK_MESSAGE(decode_checkpoint(flipped).status().is(Status::Code::kCorruption), "flip at " << at);
    }
    auto truncated = *packed;
    truncated.resize(truncated.size() - 1);
    CHECK(decode_checkpoint(truncated).status().is(Status::Code::kCorruption));
    auto longer = *packed;
    longer.push_back(std::byte{0});
    CHECK(decode_checkpoint(longer).status().is(Status::Code::kCorruption));
    CHECK(decode_checkpoint(std::vector<std::byte>(64, std::byte{1})).status().is(Status::Code::kCorruption));
  }

  TEST_CASE("a checkpoint written before checksums (plain ZSTD_compress) is still read") {
    const auto raw = index_like(50000);
    std::vector<std::byte> old(ZSTD_compressBound(raw.size()));
    old.resize(ZSTD_compress(old.data(), old.size(), raw.data(), raw.size(), 3));
    auto back = decode_checkpoint(old);
    REQUIRE_MESSAGE(back.ok(), back.status().ToString());
    CHECK_FALSE(back->checksummed);
    CHECK(back->index_file == raw);
  }

  TEST_CASE("a damaged size field is corruption, found without allocating the size it states") {
    // Both sizes get a 4-byte content size field, which no checksum covers;
    // the larger frame is not single-segment, so the decoder's window limit
    // does not refuse it first: it decodes until the data ends.
    size_t n = 0;
    SUBCASE("single segment") { n = 100000; }
    SUBCASE("windowed") { n = 3u << 20; }
    CAPTURE(n);
    const auto raw = index_like(n);
    auto packed = encode_checkpoint(raw);
    REQUIRE(packed.ok());
    const auto fhd = static_cast<unsigned>((*packed)[4]);
    const bool single_segment = (fhd & 0x20) != 0;
    REQUIRE((fhd >> 6) == 2);  // a 4-byte field
    const size_t at = 5 + (single_segment ? 0 : 1) + std::array<size_t, 4>{0, 1, 2, 4}[fhd & 3];
    auto damaged = *packed;
    for (int i = 0; i < 4; ++i) damaged[at + i] = std::byte{0xF0};  // ~3.9 GiB
    REQUIRE(ZSTD_getFrameContentSize(damaged.data(), damaged.size()) == 0xF0F0F0F0ull);
    struct rusage before {
    }, after{};
    REQUIRE(::getrusage(RUSAGE_SELF, &before) == 0);
    auto r = decode_checkpoint(damaged);
    REQUIRE(::getrusage(RUSAGE_SELF, &after) == 0);
    CHECK(r.status().is(Status::Code::kCorruption));
    MESSAGE(r.status().ToString());
    // Peak memory (KiB) grew by what the frame holds, not by the 3.9 GiB it states.
    CHECK(after.ru_maxrss - before.ru_maxrss < 256 * 1024);
    // A size stated smaller than the frame holds is corruption too.
    auto smaller = *packed;
    const uint32_t less = static_cast<uint32_t>(n - 1);
    for (int i = 0; i < 4; ++i) smaller[at + i] = std::byte(static_cast<uint8_t>(less >> (8 * i)));
    CHECK(decode_checkpoint(smaller).status().is(Status::Code::kCorruption));
  }
}
