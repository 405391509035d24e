#include "src/store/memory_store.h"

#include <algorithm>

#include "src/util/clock.h"

namespace portalbd {

Status MemoryStore::put(const std::string& key, std::span<const std::byte> data) {
  auto blob = std::make_shared<const std::vector<std::byte>>(data.begin(), data.end());
  MutexLock lock(&mu_);
  objects_[key] = std::move(blob);
  modified_unix_ms_[key] = now_unix_ms();
  return Status::OK();
}

Status MemoryStore::put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) {
  MutexLock lock(&mu_);
  objects_[key] = std::move(data);
  modified_unix_ms_[key] = now_unix_ms();
  return Status::OK();
}

Status MemoryStore::put_if_absent(const std::string& key, std::span<const std::byte> data) {
  auto blob = std::make_shared<const std::vector<std::byte>>(data.begin(), data.end());
  MutexLock lock(&mu_);
  if (!objects_.emplace(key, std::move(blob)).second) {
    return Status::AlreadyExists("object " + key + " already exists");
  }
  modified_unix_ms_[key] = now_unix_ms();
  return Status::OK();
}

Status MemoryStore::get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) {
  Blob blob;
  {
    MutexLock lock(&mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return Status::NotFound("object " + key + " not found");
    blob = it->second;
  }
  out->clear();
  if (offset >= blob->size()) return Status::OK();
  uint64_t n = std::min<uint64_t>(length, blob->size() - offset);
  out->assign(blob->begin() + static_cast<ptrdiff_t>(offset), blob->begin() + static_cast<ptrdiff_t>(offset + n));
  return Status::OK();
}

std::shared_ptr<const std::vector<std::byte>> MemoryStore::get_shared(const std::string& key) {
  MutexLock lock(&mu_);
  auto it = objects_.find(key);
  return it == objects_.end() ? nullptr : it->second;
}

Status MemoryStore::get(const std::string& key, std::vector<std::byte>* out) {
  return get_range(key, 0, UINT64_MAX, out);
}

Result<ObjectInfo> MemoryStore::head(const std::string& key) {
  MutexLock lock(&mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) return Status::NotFound("object " + key + " not found");
  auto modified = modified_unix_ms_.find(key);
  return ObjectInfo{key, it->second->size(), modified == modified_unix_ms_.end() ? 0 : modified->second};
}

Status MemoryStore::list(const std::string& prefix, std::vector<ObjectInfo>* out) {
  out->clear();
  MutexLock lock(&mu_);
  for (auto it = objects_.lower_bound(prefix); it != objects_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    out->push_back({it->first, it->second->size()});
  }
  return Status::OK();
}

Status MemoryStore::remove(const std::string& key) {
  MutexLock lock(&mu_);
  objects_.erase(key);
  modified_unix_ms_.erase(key);
  return Status::OK();
}

}  // namespace portalbd
