// RetryPolicy: which failed S3 requests to try again, and how long to wait.
//
// Retried: transport failures (connection refused or reset, timeouts: the
// HttpClient's kUnavailable), HTTP 5xx, 429, 503 SlowDown, 409 (S3 asks to
// retry ConditionalRequestConflict and OperationAborted) and 400
// RequestTimeout. Never retried: other 4xx, which cannot succeed by waiting.
//
// Backoff is exponential with "full jitter": attempt n waits a uniformly
// random time in [0, min(max, base * 2^n)], so that many clients throttled
// together do not retry in lockstep.
//
// Values; backoff_ms() draws from a thread-local generator, thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace portalbd::s3 {

struct RetryPolicy {
  int max_attempts = 8;  // total tries, the first included; >= 1
  uint32_t base_ms = 100;
  uint32_t max_ms = 10'000;

  // Upper bound of the wait before attempt `attempt` + 1 (attempt counts from 1).
  uint32_t backoff_cap_ms(int attempt) const;
  // A random wait in [0, backoff_cap_ms(attempt)].
  uint32_t backoff_ms(int attempt) const;
};

// The total limit of one attempt that moves `bytes` of body (sent, or asked
// for with a Range): request_timeout_ms, plus 1 s per MiB (a store slower
// than 1 MiB/s on one stream is treated as failing).
uint64_t attempt_timeout_ms(uint32_t request_timeout_ms, uint64_t bytes);

// True when an HTTP answer with this status and S3 error code may succeed later.
bool retryable_http(long status, const std::string& s3_code);

}  // namespace portalbd::s3
