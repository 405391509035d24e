// CountingStore: an ObjectStore decorator that counts the requests reaching
// the store, by operation, and the bytes moved, since it was made. The daemon
// wraps the store it opens in one, so `portalctl status` can show the request
// rate an operator pays for (issue 26: an idle volume should cost almost
// nothing).
//
// Requests are counted in one of two buckets by key (or list prefix): the
// writer lease's (keys under "lock/", see WriterLease) and the volume's
// (everything else: segments, checkpoints, roots, quarantine). The lease has
// its own timer; keeping it apart shows what the volume itself costs.
//
// A request is counted when it is issued, whatever it returns. get_shared()
// counts as a get only when it returns the object (a store that keeps
// objects in memory); nullptr means the caller reads with get_range, which is
// counted then. url(), persistent(), supports_conditional_put() and
// metrics() (the inner store's) are not requests.
//
// For the metrics endpoint it also times each request by operation (a
// latency histogram per operation, both buckets together) and counts the
// ones that failed, by bucket and operation. An answer that is part of the
// contract is not a failure: kNotFound (a missing key) and kAlreadyExists
// (put_if_absent lost the race).
//
// Ownership: holds a shared_ptr to the inner store.
// Thread-safety: every method is safe to call concurrently; the counters are
// relaxed atomics (no lock on the I/O path), so a snapshot taken while
// requests run may mix counts from slightly different moments.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "src/store/object_store.h"
#include "src/util/latency_histogram.h"

namespace portalbd {

// Requests of one bucket, by operation; bytes_out were sent to the store
// (put bodies), bytes_in came back from it (get bodies).
struct StoreRequestCounts {
  uint64_t put = 0, put_if_absent = 0, get = 0, get_range = 0, head = 0, list = 0, remove = 0;
  uint64_t bytes_out = 0, bytes_in = 0;
  uint64_t requests() const { return put + put_if_absent + get + get_range + head + list + remove; }
};

class CountingStore final : public ObjectStore {
 public:
  enum Bucket : unsigned { kVolume = 0, kLease, kNumBuckets };
  enum Operation : unsigned {
    kOpPut = 0,
    kOpPutIfAbsent,
    kOpGet,
    kOpGetRange,
    kOpHead,
    kOpList,
    kOpRemove,
    kNumOperations
  };
  // Label values, by Operation (put_shared counts as put).
  static constexpr std::array<const char*, kNumOperations> kOperationNames = {
      "put", "put_if_absent", "get", "get_range", "head", "list", "remove"};
  // Keys under this prefix are the lease's.
  static constexpr const char* kLeasePrefix = "lock/";

  explicit CountingStore(std::shared_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

  StoreRequestCounts counts(Bucket bucket) const;
  // Requests of `bucket` that failed, by operation (see above).
  uint64_t errors(Bucket bucket, Operation op) const;
  // How long requests took, by operation, from call to return.
  HistogramSnapshot latency(Operation op) const { return latency_[op < kNumOperations ? op : kOpPut].snapshot(); }
  static Bucket bucket_of(const std::string& key);

  Status put(const std::string& key, std::span<const std::byte> data) override;
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override;
  Status put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) override;
  bool supports_conditional_put() const override { return inner_->supports_conditional_put(); }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override;
  Status get(const std::string& key, std::vector<std::byte>* out) override;
  // Not counted: like get_shared(), it never reaches a remote store.
  Result<uint64_t> get_range_cached(const std::string& key, uint64_t offset, std::span<std::byte> out) override {
    return inner_->get_range_cached(key, offset, out);
  }
  std::shared_ptr<const std::vector<std::byte>> get_shared(const std::string& key) override;
  Result<ObjectInfo> head(const std::string& key) override;
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override;
  Status remove(const std::string& key) override;
  std::string url() const override { return inner_->url(); }
  bool persistent() const override { return inner_->persistent(); }
  std::optional<StoreMetrics> metrics() const override { return inner_->metrics(); }
  void release_spare_memory() override { inner_->release_spare_memory(); }

  ObjectStore& inner() { return *inner_; }

 private:
  enum Counter : unsigned {
    kPut = 0,
    kPutIfAbsent,
    kGet,
    kGetRange,
    kHead,
    kList,
    kRemove,
    kBytesOut,
    kBytesIn,
    kNumCounters
  };
  static_assert(kPut == static_cast<unsigned>(kOpPut) && kRemove == static_cast<unsigned>(kOpRemove));
  void add(const std::string& key, Counter counter, uint64_t n = 1) {
    counters_[bucket_of(key)][counter].fetch_add(n, std::memory_order_relaxed);
  }
  // Records a finished request of `op` begun at `start`, and its failure.
  void finish(const std::string& key, Operation op, std::chrono::steady_clock::time_point start, const Status& st);

  const std::shared_ptr<ObjectStore> inner_;
  std::array<std::array<std::atomic<uint64_t>, kNumCounters>, kNumBuckets> counters_{};
  std::array<std::array<std::atomic<uint64_t>, kNumOperations>, kNumBuckets> errors_{};
  std::array<LatencyHistogram, kNumOperations> latency_;
};

}  // namespace portalbd
