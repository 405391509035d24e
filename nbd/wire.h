// Big-endian encoding and decoding of NBD wire fields.
//
// WireWriter appends fields to a byte vector it owns; WireReader walks a
// borrowed byte span and fails (returns false) instead of reading past its end,
// so a malformed option payload can never be over-read.
//
// Thread-safety: values; one thread per instance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portalbd::nbd {

inline void store_be16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}
inline void store_be32(std::byte* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = std::byte(v & 0xff);
}
inline void store_be64(std::byte* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = std::byte(v & 0xff);
}
inline uint16_t load_be16(const std::byte* p) { return static_cast<uint16_t>((uint16_t(p[0]) << 8) | uint16_t(p[1])); }
inline uint32_t load_be32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | uint32_t(p[i]);
  return v;
}
inline uint64_t load_be64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | uint64_t(p[i]);
  return v;
}

class WireWriter {
 public:
  WireWriter& u16(uint16_t v) { return put(v, 2); }
  WireWriter& u32(uint32_t v) { return put(v, 4); }
  WireWriter& u64(uint64_t v) { return put(v, 8); }
  WireWriter& bytes(std::string_view s) {
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    buf_.insert(buf_.end(), p, p + s.size());
    return *this;
  }
  WireWriter& zeroes(size_t n) {
    buf_.insert(buf_.end(), n, std::byte{0});
    return *this;
  }
  const std::vector<std::byte>& data() const { return buf_; }
  std::vector<std::byte>& data() { return buf_; }
  size_t size() const { return buf_.size(); }

 private:
  WireWriter& put(uint64_t v, int width) {
    for (int shift = (width - 1) * 8; shift >= 0; shift -= 8) buf_.push_back(std::byte((v >> shift) & 0xff));
    return *this;
  }
  std::vector<std::byte> buf_;
};

class WireReader {
 public:
  explicit WireReader(std::span<const std::byte> in) : in_(in) {}
  bool u16(uint16_t* v) { return take(2) && (*v = load_be16(last_), true); }
  bool u32(uint32_t* v) { return take(4) && (*v = load_be32(last_), true); }
  bool u64(uint64_t* v) { return take(8) && (*v = load_be64(last_), true); }
  bool string(size_t n, std::string* s) {
    if (!take(n)) return false;
    s->assign(reinterpret_cast<const char*>(last_), n);
    return true;
  }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  bool take(size_t n) {
    if (remaining() < n) return false;
    last_ = in_.data() + pos_;
    pos_ += n;
    return true;
  }
  std::span<const std::byte> in_;
  size_t pos_ = 0;
  const std::byte* last_ = nullptr;
};

}  // namespace portalbd::nbd
