// S3Metrics: counters of what an S3Store asked of the server.
//
// Owned by the S3Store; readers take snapshot() (e.g. for `portalctl status`).
// Thread-safety: every counter is a relaxed atomic, bumped by whichever
// thread made the request; snapshot() is a consistent-enough copy (counters
// may move between fields while it reads, never backwards).
#pragma once

#include <atomic>
#include <cstdint>

namespace portalbd::s3 {

enum class RequestKind { kPut, kGet, kHead, kDelete, kList, kPost, kCount };

struct S3MetricsSnapshot {
  uint64_t requests_put = 0;  // PUT object and UploadPart
  uint64_t requests_get = 0;  // GET object (ranged or whole)
  uint64_t requests_head = 0;
  uint64_t requests_delete = 0;  // DELETE object, AbortMultipartUpload
  uint64_t requests_list = 0;    // ListObjectsV2 pages
  uint64_t requests_post = 0;    // DeleteObjects, Create/CompleteMultipartUpload
  uint64_t bytes_up = 0;         // request bodies sent
  uint64_t bytes_down = 0;       // response bodies received
  uint64_t retries = 0;          // attempts after the first
  uint64_t errors = 0;           // requests that failed for good (after retries)
  uint64_t multipart_uploads = 0;
  uint64_t requests_total() const {
    return requests_put + requests_get + requests_head + requests_delete + requests_list + requests_post;
  }
};

struct S3Metrics {
  std::atomic<uint64_t> requests[static_cast<int>(RequestKind::kCount)] = {};
  std::atomic<uint64_t> bytes_up{0};
  std::atomic<uint64_t> bytes_down{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> multipart_uploads{0};

  void count(RequestKind kind) { requests[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed); }
  S3MetricsSnapshot snapshot() const {
    auto r = [&](RequestKind k) { return requests[static_cast<int>(k)].load(std::memory_order_relaxed); };
    S3MetricsSnapshot s;
    s.requests_put = r(RequestKind::kPut);
    s.requests_get = r(RequestKind::kGet);
    s.requests_head = r(RequestKind::kHead);
    s.requests_delete = r(RequestKind::kDelete);
    s.requests_list = r(RequestKind::kList);
    s.requests_post = r(RequestKind::kPost);
    s.bytes_up = bytes_up.load(std::memory_order_relaxed);
    s.bytes_down = bytes_down.load(std::memory_order_relaxed);
    s.retries = retries.load(std::memory_order_relaxed);
    s.errors = errors.load(std::memory_order_relaxed);
    s.multipart_uploads = multipart_uploads.load(std::memory_order_relaxed);
    return s;
  }
};

}  // namespace portalbd::s3
