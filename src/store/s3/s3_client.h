// S3Client: sends one S3 request, signed, with retries, and counts it.
//
// It knows the endpoint (where and how to address the bucket), the
// credentials and the retry policy, and nothing of ObjectStore semantics:
// S3Store builds Calls and interprets answers. Every attempt is signed anew
// (the signature covers the time), waits with jittered backoff between
// attempts, and logs retries at warn level without any secret (the
// Authorization header is redacted in debug logs; credentials are never
// logged).
//
// Ownership: owns its HttpClient (connection pool) and metrics.
// Deadlines: each attempt is bounded (connect, stall, and a total scaled to
// the bytes it moves: attempt_timeout_ms()), and so is the call, retries and
// backoff included (operation_timeout_ms). A hung store therefore costs a
// caller at most operation_timeout_ms, not max_attempts stalls.
//
// Thread-safety: execute() may be called from many threads at once; the
// options and endpoint are immutable after construction.
#pragma once

#include <cstddef>
#include <ctime>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "src/store/s3/endpoint.h"
#include "src/store/s3/http_client.h"
#include "src/store/s3/retry_policy.h"
#include "src/store/s3/s3_metrics.h"
#include "src/store/s3/s3_options.h"
#include "src/store/s3/uri.h"

namespace portalbd::s3 {

struct S3Call {
  RequestKind kind = RequestKind::kGet;  // what to count it as
  const char* op = "GET";                // for messages: "PutObject", "ListObjectsV2"
  std::string method = "GET";
  std::string key;                  // full object key; "" for bucket-level calls
  QueryParams query;                // not encoded
  std::vector<HttpHeader> headers;  // extra headers, all signed (Range, If-None-Match ...)
  std::span<const std::byte> body;  // borrowed; must outlive execute()
  uint64_t answer_bytes = 0;        // size of the answer's body when known (a ranged GET)
};

class S3Client {
 public:
  // REQUIRES: options.credentials filled (resolve_credentials()).
  S3Client(S3Options options, Endpoint endpoint);

  // Sends `call` until it gets a final answer. Returns OK for 2xx; otherwise
  // the s3_status() mapping (kUnavailable once retries are exhausted, or
  // once options().operation_timeout_ms has passed: no attempt starts after
  // it, and each attempt is cut at what is left of it). The
  // last response is in *response either way (e.g. to read a 416). When
  // `attempts` is given it receives the number of attempts made.
  Status execute(const S3Call& call, HttpResponse* response, int* attempts = nullptr);

  // The request execute() sends for `call` at time `now` (UTC seconds):
  // URL, headers and Authorization. Public so that tests compare it with
  // botocore's signature byte for byte.
  HttpRequest signed_request(const S3Call& call, std::time_t now) const;

  const S3Options& options() const { return options_; }
  const Endpoint& endpoint() const { return endpoint_; }
  S3Metrics& metrics() { return metrics_; }
  const S3Metrics& metrics() const { return metrics_; }
  size_t connections_created() const { return http_.handles_created(); }

 private:
  const S3Options options_;
  const Endpoint endpoint_;
  const RetryPolicy retry_;
  SigningOptions signing_;
  HttpClient http_;
  S3Metrics metrics_;
};

}  // namespace portalbd::s3
