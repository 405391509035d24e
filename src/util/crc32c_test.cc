#include "src/util/crc32c.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using portalbd::crc32c;

static std::span<const std::byte> bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST_SUITE("util.crc32c") {
  TEST_CASE("known vectors (RFC 3720 B.4 and the check value)") {
    CHECK(crc32c(bytes("123456789")) == 0xE3069283u);
    std::vector<std::byte> zeros(32, std::byte{0});
    CHECK(crc32c(zeros) == 0x8A9136AAu);
    std::vector<std::byte> ones(32, std::byte{0xFF});
    CHECK(crc32c(ones) == 0x62A8AB43u);
  }
  TEST_CASE("incremental equals one-shot") {
    std::string s = "the quick brown fox jumps over the lazy dog, twice over";
    uint32_t whole = crc32c(bytes(s));
    uint32_t part = crc32c(bytes(s.substr(0, 13)));
    part = crc32c(bytes(s.substr(13)), part);
    CHECK(whole == part);
  }
}
