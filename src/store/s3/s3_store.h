// S3Store: an ObjectStore in an S3 bucket under a prefix (s3://bucket/prefix).
//
// Key "segments/0001.seg" is the S3 object "<prefix>/segments/0001.seg".
// put() is one PUT up to multipart_threshold_bytes and a multipart upload
// above it (aborted on failure, so no parts linger); either way S3 makes the
// object visible whole or not at all. put_if_absent() sends If-None-Match: *;
// whether the server enforces it is probed at Open() (probe_conditional_put)
// and reported by supports_conditional_put(): AWS S3 does, s3rver and older
// compatibles ignore it, and the engine then fences with a lease instead.
//
// Errors name bucket, key and the S3 error code (s3_error.h); transient ones
// are retried inside (s3_client.h) and surface as kUnavailable when the
// retries run out.
//
// Ownership: owns its S3Client (connections, metrics). Thread-safety: every
// method may be called from many threads at once (see ObjectStore).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "src/store/object_store.h"
#include "src/store/s3/s3_client.h"
#include "src/store/s3/s3_options.h"

namespace portalbd::s3 {

class S3Store final : public ObjectStore {
 public:
  // Resolves the endpoint and credentials; with options.probe_on_open, lists
  // the bucket once (a bad bucket, credentials or endpoint fails here, with
  // the reason) and probes conditional PUT, logging which fencing applies.
  static Result<std::shared_ptr<S3Store>> Open(S3Options options);

  Status put(const std::string& key, std::span<const std::byte> data) override;
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override;
  bool supports_conditional_put() const override { return conditional_put_enforced_.load(); }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override;
  Status get(const std::string& key, std::vector<std::byte>* out) override;
  Result<ObjectInfo> head(const std::string& key) override;
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override;
  Status remove(const std::string& key) override;
  std::string url() const override;
  bool persistent() const override { return true; }
  std::optional<StoreMetrics> metrics() const override;

  // Deletes many keys with DeleteObjects (1000 per request); missing keys are
  // fine. The first per-key error fails the call, naming the key.
  Status remove_many(const std::vector<std::string>& keys);

  // Writes a probe key twice with If-None-Match: * and reports whether the
  // second write was refused (true: the store enforces conditional PUT).
  // Removes the probe key after. Updates supports_conditional_put().
  Result<bool> probe_conditional_put();

  // One ListObjectsV2 of at most one key: proves bucket, credentials and
  // endpoint work.
  Status check_access();

  // The requests made so far; metrics() gives the same as "s3" for status.
  S3MetricsSnapshot s3_metrics() const { return client_->metrics().snapshot(); }
  const S3Options& options() const { return client_->options(); }
  size_t connections_created() const { return client_->connections_created(); }

 private:
  explicit S3Store(std::unique_ptr<S3Client> client) : client_(std::move(client)) {}
  // "<prefix>/<key>"; rejects keys S3 or the engine would misread.
  Result<std::string> full_key(const std::string& key) const;
  Status put_single(const std::string& full, std::span<const std::byte> data, bool if_absent, int* attempts);
  Status put_multipart(const std::string& full, std::span<const std::byte> data);

  std::unique_ptr<S3Client> client_;
  std::atomic<bool> conditional_put_enforced_{false};  // false until a probe proves it
};

}  // namespace portalbd::s3
