#include "src/store/counting_store.h"

namespace portalbd {

CountingStore::Bucket CountingStore::bucket_of(const std::string& key) {
  return key.rfind(kLeasePrefix, 0) == 0 ? kLease : kVolume;
}

StoreRequestCounts CountingStore::counts(Bucket bucket) const {
  const auto& c = counters_[bucket < kNumBuckets ? bucket : kVolume];
  auto at = [&](Counter i) { return c[i].load(std::memory_order_relaxed); };
  StoreRequestCounts out;
  out.put = at(kPut);
  out.put_if_absent = at(kPutIfAbsent);
  out.get = at(kGet);
  out.get_range = at(kGetRange);
  out.head = at(kHead);
  out.list = at(kList);
  out.remove = at(kRemove);
  out.bytes_out = at(kBytesOut);
  out.bytes_in = at(kBytesIn);
  return out;
}

Status CountingStore::put(const std::string& key, std::span<const std::byte> data) {
  add(key, kPut);
  add(key, kBytesOut, data.size());
  return inner_->put(key, data);
}

Status CountingStore::put_if_absent(const std::string& key, std::span<const std::byte> data) {
  add(key, kPutIfAbsent);
  add(key, kBytesOut, data.size());
  return inner_->put_if_absent(key, data);
}

Status CountingStore::put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) {
  add(key, kPut);
  add(key, kBytesOut, data->size());
  return inner_->put_shared(key, std::move(data));
}

Status CountingStore::get_range(const std::string& key, uint64_t offset, uint64_t length,
                                std::vector<std::byte>* out) {
  add(key, kGetRange);
  Status st = inner_->get_range(key, offset, length, out);
  if (st.ok()) add(key, kBytesIn, out->size());
  return st;
}

Status CountingStore::get(const std::string& key, std::vector<std::byte>* out) {
  add(key, kGet);
  Status st = inner_->get(key, out);
  if (st.ok()) add(key, kBytesIn, out->size());
  return st;
}

std::shared_ptr<const std::vector<std::byte>> CountingStore::get_shared(const std::string& key) {
  auto object = inner_->get_shared(key);
  if (object != nullptr) {
    add(key, kGet);
    add(key, kBytesIn, object->size());
  }
  return object;
}

Result<ObjectInfo> CountingStore::head(const std::string& key) {
  add(key, kHead);
  return inner_->head(key);
}

Status CountingStore::list(const std::string& prefix, std::vector<ObjectInfo>* out) {
  add(prefix, kList);
  return inner_->list(prefix, out);
}

Status CountingStore::remove(const std::string& key) {
  add(key, kRemove);
  return inner_->remove(key);
}

}  // namespace portalbd
