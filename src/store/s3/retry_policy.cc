#include "src/store/s3/retry_policy.h"

#include <algorithm>
#include <random>

namespace portalbd::s3 {

uint32_t RetryPolicy::backoff_cap_ms(int attempt) const {
  int shift = std::clamp(attempt - 1, 0, 30);
  uint64_t cap = static_cast<uint64_t>(base_ms) << shift;
  return static_cast<uint32_t>(std::min<uint64_t>(cap, max_ms));
}

uint32_t RetryPolicy::backoff_ms(int attempt) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<uint32_t> dist(0, backoff_cap_ms(attempt));
  return dist(rng);
}

uint64_t attempt_timeout_ms(uint32_t request_timeout_ms, uint64_t bytes) {
  return request_timeout_ms + ((bytes + (1u << 20) - 1) >> 20) * 1000;
}

bool retryable_http(long status, const std::string& s3_code) {
  if (status >= 500) return status != 501;  // 501 NotImplemented never changes
  if (status == 429 || status == 409) return true;
  if (s3_code == "SlowDown" || s3_code == "RequestTimeout" || s3_code == "RequestTimeTooSkewed" ||
      s3_code == "InternalError" || s3_code == "ServiceUnavailable") {
    return true;
  }
  return false;
}

}  // namespace portalbd::s3
