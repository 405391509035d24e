// Little-endian encoding helpers for on-disk and on-wire formats.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace portalbd {

inline void put_u8(std::vector<std::byte>* out, uint8_t v) { out->push_back(std::byte{v}); }
inline void put_u32(std::vector<std::byte>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(std::byte(static_cast<uint8_t>(v >> (8 * i))));
}
inline void put_u64(std::vector<std::byte>* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(std::byte(static_cast<uint8_t>(v >> (8 * i))));
}
inline void put_zeros(std::vector<std::byte>* out, size_t n) { out->insert(out->end(), n, std::byte{0}); }

inline uint32_t get_u32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint64_t get_u64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace portalbd
