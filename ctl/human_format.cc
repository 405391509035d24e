#include "ctl/human_format.h"

#include <ctime>

namespace portalbd::ctl {

std::string format_bytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  int unit = 0;
  uint64_t whole = bytes;
  while (whole >= 1024 && unit < 6) {
    whole /= 1024;
    ++unit;
  }
  // One decimal, computed in integers so that 2^64-1 does not round up
  // into a unit that does not exist.
  const uint64_t divisor = 1ull << (10 * unit);
  const uint64_t tenths = (bytes % divisor) * 10 / divisor;
  std::string text = std::to_string(whole);
  if (tenths != 0) text += "." + std::to_string(tenths);
  return text + " " + kUnits[unit];
}

std::string format_bytes_exact(uint64_t bytes) {
  if (bytes < 1024) return format_bytes(bytes);
  return format_bytes(bytes) + " (" + std::to_string(bytes) + " bytes)";
}

std::string format_duration_s(uint64_t seconds) {
  struct Unit {
    uint64_t seconds;
    const char* suffix;
  };
  static const Unit kUnits[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
  if (seconds == 0) return "0s";
  std::string text;
  int shown = 0;
  for (const Unit& u : kUnits) {
    const uint64_t n = seconds / u.seconds;
    if (n == 0 && shown == 0) continue;
    seconds %= u.seconds;
    if (n != 0) text += (text.empty() ? "" : " ") + std::to_string(n) + u.suffix;
    if (++shown == 2) break;
  }
  return text;
}

std::string format_unix_time(int64_t seconds) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(seconds);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string format_count(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace portalbd::ctl
