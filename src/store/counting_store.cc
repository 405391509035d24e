#include "src/store/counting_store.h"

#include <chrono>

namespace portalbd {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

void CountingStore::finish(const std::string& key, Operation op, Clock::time_point start, const Status& st) {
  latency_[op].record(Clock::now() - start);
  const Status::Code code = st.code();
  if (!st.ok() && code != Status::Code::kNotFound && code != Status::Code::kAlreadyExists) {
    errors_[bucket_of(key)][op].fetch_add(1, std::memory_order_relaxed);
  }
}

uint64_t CountingStore::errors(Bucket bucket, Operation op) const {
  if (bucket >= kNumBuckets || op >= kNumOperations) return 0;
  return errors_[bucket][op].load(std::memory_order_relaxed);
}

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
  const auto start = Clock::now();
  Status st = inner_->put(key, data);
  finish(key, kOpPut, start, st);
  return st;
}

Status CountingStore::put_if_absent(const std::string& key, std::span<const std::byte> data) {
  add(key, kPutIfAbsent);
  add(key, kBytesOut, data.size());
  const auto start = Clock::now();
  Status st = inner_->put_if_absent(key, data);
  finish(key, kOpPutIfAbsent, start, st);
  return st;
}

Status CountingStore::put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) {
  add(key, kPut);
  add(key, kBytesOut, data->size());
  const auto start = Clock::now();
  Status st = inner_->put_shared(key, std::move(data));
  finish(key, kOpPut, start, st);
  return st;
}

Status CountingStore::get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) {
  add(key, kGetRange);
  const auto start = Clock::now();
  Status st = inner_->get_range(key, offset, length, out);
  finish(key, kOpGetRange, start, st);
  if (st.ok()) add(key, kBytesIn, out->size());
  return st;
}

Status CountingStore::get(const std::string& key, std::vector<std::byte>* out) {
  add(key, kGet);
  const auto start = Clock::now();
  Status st = inner_->get(key, out);
  finish(key, kOpGet, start, st);
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
  const auto start = Clock::now();
  Result<ObjectInfo> r = inner_->head(key);
  finish(key, kOpHead, start, r.ok() ? Status::OK() : r.status());
  return r;
}

Status CountingStore::list(const std::string& prefix, std::vector<ObjectInfo>* out) {
  add(prefix, kList);
  const auto start = Clock::now();
  Status st = inner_->list(prefix, out);
  finish(prefix, kOpList, start, st);
  return st;
}

Status CountingStore::remove(const std::string& key) {
  add(key, kRemove);
  const auto start = Clock::now();
  Status st = inner_->remove(key);
  finish(key, kOpRemove, start, st);
  return st;
}

}  // namespace portalbd
