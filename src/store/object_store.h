// ObjectStore: the seam between the engine and object storage.
//
// Keys are relative to the store's root/prefix ("segments/0000000000000001.seg").
// Implementations: MemoryStore (memory://), FileStore (file:///dir) and S3Store
// (s3://bucket/prefix, src/store/s3/, which retries transient errors inside).
// Decorators wrap any of them: FaultStore (fault injection, for tests),
// CountingStore (request counts, for `portalctl status`) and EncryptedStore
// (client-side encryption, issue 25).
//
// Contract:
//   * put() is atomic: readers see the whole old object or the whole new one.
//     When put() returns OK the object is durable (fsync'ed, acknowledged).
//   * put_if_absent() fails with kAlreadyExists when the key exists. Stores that
//     cannot enforce it say so through supports_conditional_put().
//   * get_range() of a missing key is kNotFound; reading past the end returns
//     the bytes that exist (possibly fewer than asked).
//   * list() returns keys beginning with `prefix`, sorted ascending.
//   * remove() of a missing key is OK (idempotent).
//
// Thread-safety: every method may be called from many threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/util/status.h"

namespace portalbd {

// Where a store puts objects of its own for a moment, e.g. S3Store's probe of
// conditional PUTs at open. One may be left behind (a kill -9 mid-probe, or a
// server that lists a removed key a little longer): not volume data.
inline constexpr const char* kStoreProbePrefix = ".portalbd-probe/";

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  // When the object was last written, Unix ms by the store's clock (S3's
  // Last-Modified, a file's mtime). head() fills it; list() may leave it 0,
  // as does a store that cannot tell.
  int64_t modified_unix_ms = 0;
};

// Counters a store keeps of its own traffic (the S3 store's requests,
// retries and bytes), for `portalctl status`, which shows them as an object
// named `name` ("s3") holding each counter under its own name.
struct StoreMetrics {
  std::string name;
  std::vector<std::pair<std::string, uint64_t>> counters;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  virtual Status put(const std::string& key, std::span<const std::byte> data) = 0;
  virtual Status put_if_absent(const std::string& key, std::span<const std::byte> data) = 0;
  // put() of an object the caller will never change again. A store that keeps
  // objects in memory keeps this one instead of a copy; others put() it.
  virtual Status put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) {
    return put(key, *data);
  }
  virtual bool supports_conditional_put() const = 0;
  // Reads up to `length` bytes at `offset` into *out (resized to what was read).
  virtual Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) = 0;
  // get_range() into `out` (up to out.size() bytes; fewer only where the
  // object ends), only if it can answer without waiting for a disk or the
  // network: a local file whose pages the kernel holds. Returns the bytes
  // read. Anything else (pages not cached, an error, a store that cannot
  // tell) is kUnavailable, and the caller does a get_range() where waiting is
  // fine. For a reader that must not block (an NBD connection's reader
  // thread); `out` is the caller's, so nothing is allocated or zeroed here.
  virtual Result<uint64_t> get_range_cached(const std::string& /*key*/, uint64_t /*offset*/,
                                            std::span<std::byte> /*out*/) {
    return Status::Unavailable("this store has no cached reads");
  }
  // Reads the whole object.
  virtual Status get(const std::string& key, std::vector<std::byte>* out) = 0;
  // The whole object, shared instead of copied, from a store that keeps
  // objects in memory; nullptr from any other store, or when it is missing
  // (callers then use get_range, which reports the error).
  virtual std::shared_ptr<const std::vector<std::byte>> get_shared(const std::string& /*key*/) { return nullptr; }
  // The object's bytes exactly as the backing store holds them, and such
  // bytes put under another key: how the engine moves an object aside
  // (quarantine/) without reading it through a decorator that transforms
  // content, so that an EncryptedStore object that fails authentication can
  // still be kept. Stores that keep what they are given use get()/put();
  // a decorator above a transforming one forwards these to it.
  virtual Status get_as_stored(const std::string& key, std::vector<std::byte>* out) { return get(key, out); }
  virtual Status put_as_stored(const std::string& key, std::span<const std::byte> data) { return put(key, data); }
  virtual Result<ObjectInfo> head(const std::string& key) = 0;
  virtual Status list(const std::string& prefix, std::vector<ObjectInfo>* out) = 0;
  virtual Status remove(const std::string& key) = 0;

  // "memory://", "file:///var/lib/portalbd/data": for logs and status.
  virtual std::string url() const = 0;
  // True when data outlives the process (false for memory://).
  virtual bool persistent() const = 0;
  // The store's own counters, read now; nullopt from a store that keeps none.
  // Decorators forward their inner store's, so callers need not know which
  // store they hold.
  virtual std::optional<StoreMetrics> metrics() const { return std::nullopt; }
  // Frees memory the store keeps between puts for the next one (a sealing
  // store's buffers). The write path calls it when its uploads run out of
  // work, as it drops its own spare. Decorators forward it.
  virtual void release_spare_memory() {}
};

// Opens the store a URL names: memory://, file:///abs/path (or file://rel/path),
// s3://bucket/prefix. Unknown schemes are kInvalidArgument naming the scheme.
// `settings` overrides environment variables the S3 store reads
// (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE):
// the daemon's [storage] config keys land there.
Result<std::shared_ptr<ObjectStore>> open_object_store(const std::string& url,
                                                       const std::map<std::string, std::string>& settings = {});

}  // namespace portalbd
