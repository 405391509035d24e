// FileStore: an ObjectStore in a local directory (file:///path).
//
// A key "segments/0001.seg" is the file <root>/segments/0001.seg. put() writes
// a hidden temp file, fsyncs it, renames it over the key and fsyncs the
// directory, so an object is either absent or whole and durable, even across
// a crash or power loss. put_if_absent() uses link(2), which fails atomically
// when the key exists: real conditional put, usable for fencing. Files it
// creates are mode 0600 and directories 0700, whatever the umask.
//
// Thread-safety: all methods are safe concurrently; the file system orders
// them. Files beginning with '.' are temporaries and never listed.
#pragma once

#include <atomic>

#include "src/store/object_store.h"

namespace portalbd {

class FileStore final : public ObjectStore {
 public:
  // Creates `root` (and parents) when missing.
  static Result<std::shared_ptr<FileStore>> Open(const std::string& root);

  Status put(const std::string& key, std::span<const std::byte> data) override;
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override;
  bool supports_conditional_put() const override { return true; }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override;
  // One preadv2(RWF_NOWAIT): the kernel answers from its page cache or not at all.
  Result<uint64_t> get_range_cached(const std::string& key, uint64_t offset, std::span<std::byte> out) override;
  Status get(const std::string& key, std::vector<std::byte>* out) override;
  Result<ObjectInfo> head(const std::string& key) override;
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override;
  Status remove(const std::string& key) override;
  std::string url() const override { return "file://" + root_; }
  bool persistent() const override { return true; }

 private:
  explicit FileStore(std::string root) : root_(std::move(root)) {}
  // Validates `key` and returns its path; rejects "..", empty parts, leading '/'.
  Result<std::string> path_for(const std::string& key) const;
  // Writes data to a fresh temp file beside `path`, fsynced; returns its name.
  Result<std::string> write_temp(const std::string& path, std::span<const std::byte> data);

  const std::string root_;
  std::atomic<uint64_t> temp_counter_{0};
};

}  // namespace portalbd
