// Test helper for the engine's upload and replay tests: segment i (1-based)
// is one write of kNumberedSegmentBytes holding numbered_pattern(i) at
// (i-1) * kNumberedSegmentBytes. With segment_bytes set to that size, every
// such write seals exactly one buffer, so write i becomes segment i.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "src/engine/volume.h"

namespace portalbd::testing {

inline constexpr uint64_t kNumberedSegmentBytes = 256 << 10;

inline std::vector<std::byte> numbered_pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(seed * 7 + i * 31 + (i >> 12)));
  return v;
}

// Writes segments first..last; with `fua` each write is durable when it returns.
inline void write_numbered_segments(Volume& v, int first, int last, bool fua) {
  for (int i = first; i <= last; ++i) {
    const auto data = numbered_pattern(kNumberedSegmentBytes, static_cast<uint8_t>(i));
    REQUIRE(v.write((i - 1) * kNumberedSegmentBytes, data, fua).ok());
  }
}

// Checks that segment i reads back (present) or reads as zeroes (lost).
inline void check_numbered_segment(Volume& v, int i, bool present = true) {
  std::vector<std::byte> got(kNumberedSegmentBytes);
  REQUIRE(v.read((i - 1) * kNumberedSegmentBytes, got).ok());
  const auto want = present ? numbered_pattern(kNumberedSegmentBytes, static_cast<uint8_t>(i))
                            : std::vector<std::byte>(kNumberedSegmentBytes);
  CHECK_MESSAGE(std::memcmp(got.data(), want.data(), got.size()) == 0, "segment " << i);
}

}  // namespace portalbd::testing
