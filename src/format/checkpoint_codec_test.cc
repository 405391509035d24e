// Checkpoint encoding: a checksum of the index travels with it, so damage is
// found before a restore; checkpoints written before it are still read.
#include <doctest/doctest.h>

#include <zstd.h>

#include "src/format/checkpoint_codec.h"

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
}
