// noise(): random, incompressible bytes for unit tests, so that stored bytes
// track written bytes; the same seed gives the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace portalbd::testing {

inline std::vector<std::byte> noise(uint64_t n, uint64_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t x = rng();
    std::memcpy(v.data() + i, &x, 8);
  }
  return v;
}

}  // namespace portalbd::testing
