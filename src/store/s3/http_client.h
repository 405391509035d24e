// HttpClient: blocking HTTP/1.1 requests over libcurl, with connection reuse.
//
// Each request borrows a CURL easy handle from a pool and returns it after:
// an easy handle keeps its connections alive, so reusing handles reuses TCP
// and TLS sessions. The pool grows on demand (one handle per concurrent
// request) and keeps at most `max_idle` idle handles.
//
// perform() reports transport failures (refused, reset, timeout, TLS) as a
// non-OK Status and every HTTP answer, 4xx and 5xx included, as OK with the
// status code in the response: deciding what a status means is the S3
// layer's job (s3_error.h), retrying is the caller's (retry_policy.h).
//
// Ownership: the request body is borrowed and must outlive perform().
// Thread-safety: perform() may be called from many threads at once; the pool
// is guarded by a mutex, and a handle is used by one thread at a time.
// libcurl callbacks never let an exception escape (they return an abort code).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "src/store/s3/sigv4.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd::s3 {

// Deadlines of one request (one attempt; retrying is the caller's):
//   connect: TCP (and TLS) set up within connect_timeout_ms;
//   stall:   no byte moved (sent or received, waiting for the first byte
//            of the answer included) for stall_timeout_ms aborts it: a hung
//            server is noticed in that long (to about a second: curl
//            reports progress about once a second), however large the body;
//   total:   perform()'s timeout_ms, which the caller scales to the body.
// Each ends the request with kUnavailable (retryable).
struct HttpOptions {
  uint32_t connect_timeout_ms = 5'000;
  uint32_t stall_timeout_ms = 15'000;
  uint32_t max_idle = 16;
  std::string ca_file;  // "" = system bundle
};

struct HttpRequest {
  std::string method;  // GET, PUT, HEAD, DELETE, POST
  std::string url;     // wire form, already encoded
  std::vector<HttpHeader> headers;
  std::span<const std::byte> body;  // borrowed
};

struct HttpResponse {
  long status = 0;
  std::vector<HttpHeader> headers;  // names lowercased
  std::vector<std::byte> body;
  // Value of the first header named `lname` (lowercase), or "".
  std::string header(const std::string& lname) const;
  std::string body_text() const { return {reinterpret_cast<const char*>(body.data()), body.size()}; }
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Transport errors: kUnavailable (retryable: refused, reset, timeout, DNS)
  // or kIOError / kInvalidArgument (TLS verification, bad URL) naming the URL.
  // `timeout_ms` bounds the whole request, connect to last byte (0: only the
  // connect and stall limits of HttpOptions).
  Status perform(const HttpRequest& request, HttpResponse* response, uint64_t timeout_ms = 0);

  // Handles created so far (for tests of reuse).
  size_t handles_created() const EXCLUDES(mu_);

 private:
  struct Easy;  // one CURL* with its RAII deleter
  std::unique_ptr<Easy> acquire() EXCLUDES(mu_);
  void release(std::unique_ptr<Easy> easy) EXCLUDES(mu_);

  const HttpOptions options_;
  mutable Mutex mu_;
  std::vector<std::unique_ptr<Easy>> idle_ GUARDED_BY(mu_);
  size_t created_ GUARDED_BY(mu_) = 0;
};

}  // namespace portalbd::s3
