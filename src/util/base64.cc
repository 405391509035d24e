#include "src/util/base64.h"

#include <cstdint>

namespace portalbd {
namespace {

// The value of one base64 digit, or -1.
int digit_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  uint32_t bits = 0;  // the undecoded bits, low `nbits` of them
  int nbits = 0;
  size_t digits = 0, padding = 0;
  for (char c : text) {
    if (is_space(c)) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding != 0) return std::nullopt;  // a digit after padding
    const int v = digit_value(c);
    if (v < 0) return std::nullopt;
    ++digits;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xff));
      bits &= (1u << nbits) - 1;
    }
  }
  // A group of 4 digits holds 3 bytes; a last group of 1 digit holds none.
  if (digits % 4 == 1) return std::nullopt;
  if (padding != 0 && (digits + padding) % 4 != 0) return std::nullopt;
  if (bits != 0) return std::nullopt;  // leftover bits set: not what an encoder writes
  return out;
}

}  // namespace portalbd
