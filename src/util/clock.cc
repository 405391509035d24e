#include "src/util/clock.h"

#include <chrono>
#include <ctime>

namespace portalbd {
namespace {

std::string format_utc(int64_t unix_ms, const char* format) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

}  // namespace

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc3339_utc(int64_t unix_ms) { return format_utc(unix_ms, "%Y-%m-%dT%H:%M:%SZ"); }
std::string compact_utc(int64_t unix_ms) { return format_utc(unix_ms, "%Y%m%dT%H%M%SZ"); }

}  // namespace portalbd
