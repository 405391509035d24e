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
  TEST_CASE("every length and alignment matches a bit-at-a-time reference") {
    // The library switches kernels by length (folding for long buffers, a
    // tail loop for the rest); compare it with the polynomial itself.
    auto reference = [](std::span<const std::byte> d) {
      uint32_t c = 0xFFFFFFFFu;
      for (std::byte b : d) {
        c ^= static_cast<uint8_t>(b);
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      }
      return ~c;
    };
    std::vector<std::byte> data(70000);
    uint32_t x = 12345;
    for (auto& b : data) b = std::byte(static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 16));
    for (size_t offset : {0, 1, 3, 7}) {
      for (size_t len : {0, 1, 15, 16, 63, 64, 255, 256, 1023, 4096, 4099, 65536, 69000}) {
        auto part = std::span<const std::byte>(data).subspan(offset, len);
        CHECK_MESSAGE(crc32c(part) == reference(part), "offset ", offset, " length ", len);
      }
    }
  }
}
