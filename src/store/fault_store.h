// FaultStore: an ObjectStore decorator that injects storage failures, for
// tests (DESIGN "Seams": fault injection; STYLE "Tests": rocksdb's
// fault_injection_fs, sqlite's do_faultsim_test sweep).
//
// It wraps any store and forwards every call, counting calls per operation
// and in total (the "call number" below is 1-based over all operations, in
// the order the calls reach the decorator). Faults, checked in this order:
//
//   * crash point (crash_after(n)): calls 1..n go through, every call after
//     the n-th fails with kUnavailable and never reaches the inner store —
//     the process "died" after its n-th storage call and nothing it did later
//     landed. crash_now() is crash_after(calls so far).
//   * fail the n-th call (fail_call(n, status)): only that call fails, with
//     `status`, without reaching the inner store; later calls go through.
//   * rules (add_rule): every call whose op is in the rule's op mask and
//     whose key starts with the rule's key prefix fails with the rule's
//     status (optionally only the first `times` matches).
//   * a hang (hang(ops)): every call whose op is in the mask blocks, before
//     anything above is checked, until release(): a store that accepts
//     requests and never answers (a stopped S3 server). Released calls then
//     go on as if they had just arrived.
//
// A failed call has no effect on the inner store (PUTs are durable when they
// return OK, so "drop unsynced data" has no meaning here). url(),
// persistent() and metrics() are the inner store's and are never counted or
// failed.
//
// Ownership: holds a shared_ptr to the inner store; the inner store outlives
// the decorator and can be reopened without it (the "restart" of a test).
// Thread-safety: every method is safe to call concurrently (one mutex guards
// the counters and the fault plan; it is not held across inner calls).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/store/object_store.h"
#include "src/util/mutex.h"

namespace portalbd {

class FaultStore final : public ObjectStore {
 public:
  enum Op : unsigned {
    kPut = 0,
    kPutIfAbsent,
    kGetRange,
    kGet,
    kHead,
    kList,
    kRemove,
    kNumOps,
  };
  static constexpr unsigned kAllOps = (1u << kNumOps) - 1;
  static constexpr unsigned kWrites = (1u << kPut) | (1u << kPutIfAbsent) | (1u << kRemove);
  static constexpr unsigned kReads = (1u << kGetRange) | (1u << kGet) | (1u << kHead) | (1u << kList);
  static const char* OpName(Op op);

  struct Rule {
    unsigned ops = kAllOps;  // bit mask of (1u << Op)
    std::string key_prefix;  // "" matches every key
    Status status = Status::IOError("injected fault");
    int64_t times = -1;  // matches left; -1: forever
  };

  explicit FaultStore(std::shared_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

  // Fails the n-th call (1-based, counted from now on: calls() + n) with `st`.
  void fail_call(uint64_t n, Status st);
  // Calls after the n-th (1-based, counted from now on) fail with kUnavailable.
  void crash_after(uint64_t n);
  void crash_now() { crash_after(0); }
  void add_rule(Rule rule);
  // Drops every fault: crash point, n-th call and rules. Counters stay.
  // A hang stays until release().
  void clear_faults();
  // Calls of the ops in `ops` (a mask of 1u << Op) block until release().
  void hang(unsigned ops);
  void release();
  uint64_t hanging() const;  // calls blocked in a hang right now

  uint64_t calls() const;  // every call that reached the decorator
  uint64_t calls(Op op) const;
  uint64_t injected() const;  // calls failed by a fault
  bool crashed() const;       // a crash point has been passed
  // The first kMaxTrace calls, in order, as "op key" ("put segments/..."),
  // for diagnosing a sweep.
  std::vector<std::string> trace() const;
  static constexpr size_t kMaxTrace = 100000;

  Status put(const std::string& key, std::span<const std::byte> data) override;
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override;
  bool supports_conditional_put() const override { return inner_->supports_conditional_put(); }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override;
  Status get(const std::string& key, std::vector<std::byte>* out) override;
  Result<ObjectInfo> head(const std::string& key) override;
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override;
  Status remove(const std::string& key) override;
  std::string url() const override { return inner_->url(); }
  bool persistent() const override { return inner_->persistent(); }
  std::optional<StoreMetrics> metrics() const override { return inner_->metrics(); }
  void release_spare_memory() override { inner_->release_spare_memory(); }

  ObjectStore& inner() { return *inner_; }

 private:
  // Counts the call and returns the injected status, or OK to go through.
  Status admit(Op op, const std::string& key) EXCLUDES(mu_);

  const std::shared_ptr<ObjectStore> inner_;
  mutable Mutex mu_;
  uint64_t calls_ GUARDED_BY(mu_) = 0;
  std::array<uint64_t, kNumOps> op_calls_ GUARDED_BY(mu_) = {};
  uint64_t injected_ GUARDED_BY(mu_) = 0;
  uint64_t fail_at_ GUARDED_BY(mu_) = 0;  // 0: none
  Status fail_status_ GUARDED_BY(mu_);
  bool crash_set_ GUARDED_BY(mu_) = false;
  uint64_t crash_after_ GUARDED_BY(mu_) = 0;
  std::vector<Rule> rules_ GUARDED_BY(mu_);
  unsigned hang_ops_ GUARDED_BY(mu_) = 0;
  uint64_t hanging_ GUARDED_BY(mu_) = 0;
  CondVar released_;  // hang_ops_ changed
  std::vector<std::string> trace_ GUARDED_BY(mu_);
};

}  // namespace portalbd
