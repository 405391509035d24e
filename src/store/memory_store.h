// MemoryStore: an ObjectStore held in process memory (memory://).
// Nothing survives the process; used for tests, benchmarks and scratch volumes.
// Thread-safety: all methods are safe concurrently (one mutex guards the map).
#pragma once

#include <map>

#include "src/store/object_store.h"
#include "src/util/mutex.h"

namespace portalbd {

class MemoryStore final : public ObjectStore {
 public:
  Status put(const std::string& key, std::span<const std::byte> data) override;
  Status put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) override;
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override;
  bool supports_conditional_put() const override { return true; }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override;
  Status get(const std::string& key, std::vector<std::byte>* out) override;
  std::shared_ptr<const std::vector<std::byte>> get_shared(const std::string& key) override;
  Result<ObjectInfo> head(const std::string& key) override;
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override;
  Status remove(const std::string& key) override;
  std::string url() const override { return "memory://"; }
  bool persistent() const override { return false; }

 private:
  using Blob = std::shared_ptr<const std::vector<std::byte>>;
  mutable Mutex mu_;
  std::map<std::string, Blob> objects_ GUARDED_BY(mu_);
  std::map<std::string, int64_t> modified_unix_ms_ GUARDED_BY(mu_);  // by key, for head()
};

}  // namespace portalbd
