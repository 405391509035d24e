#include "src/store/fault_store.h"

namespace portalbd {

const char* FaultStore::OpName(Op op) {
  switch (op) {
    case kPut: return "put";
    case kPutIfAbsent: return "put_if_absent";
    case kGetRange: return "get_range";
    case kGet: return "get";
    case kHead: return "head";
    case kList: return "list";
    case kRemove: return "remove";
    default: return "?";
  }
}

void FaultStore::fail_call(uint64_t n, Status st) {
  MutexLock lock(&mu_);
  fail_at_ = calls_ + n;
  fail_status_ = st.ok() ? Status::IOError("injected fault") : std::move(st);
}

void FaultStore::crash_after(uint64_t n) {
  MutexLock lock(&mu_);
  crash_set_ = true;
  crash_after_ = calls_ + n;
}

void FaultStore::add_rule(Rule rule) {
  MutexLock lock(&mu_);
  rules_.push_back(std::move(rule));
}

void FaultStore::clear_faults() {
  MutexLock lock(&mu_);
  fail_at_ = 0;
  crash_set_ = false;
  rules_.clear();
}

void FaultStore::hang(unsigned ops) {
  MutexLock lock(&mu_);
  hang_ops_ = ops;
}

void FaultStore::release() {
  {
    MutexLock lock(&mu_);
    hang_ops_ = 0;
  }
  released_.notify_all();
}

uint64_t FaultStore::hanging() const {
  MutexLock lock(&mu_);
  return hanging_;
}

uint64_t FaultStore::calls() const {
  MutexLock lock(&mu_);
  return calls_;
}

uint64_t FaultStore::calls(Op op) const {
  MutexLock lock(&mu_);
  return op < kNumOps ? op_calls_[op] : 0;
}

uint64_t FaultStore::injected() const {
  MutexLock lock(&mu_);
  return injected_;
}

bool FaultStore::crashed() const {
  MutexLock lock(&mu_);
  return crash_set_ && calls_ > crash_after_;
}

std::vector<std::string> FaultStore::trace() const {
  MutexLock lock(&mu_);
  return trace_;
}

Status FaultStore::admit(Op op, const std::string& key) {
  MutexLock lock(&mu_);
  if ((hang_ops_ & (1u << op)) != 0) {
    ++hanging_;
    while ((hang_ops_ & (1u << op)) != 0) released_.wait(lock);
    --hanging_;
  }
  const uint64_t n = ++calls_;
  op_calls_[op]++;
  if (trace_.size() < kMaxTrace) trace_.push_back(std::string(OpName(op)) + " " + key);
  const std::string what = std::string(OpName(op)) + " " + key + " (call " + std::to_string(n) + ")";
  if (crash_set_ && n > crash_after_) {
    injected_++;
    return Status::Unavailable("injected crash: storage gone after call " + std::to_string(crash_after_) + ": " + what);
  }
  if (fail_at_ != 0 && n == fail_at_) {
    injected_++;
    return Status(fail_status_.code(), fail_status_.message() + ": " + what);
  }
  for (auto& r : rules_) {
    if (!(r.ops & (1u << op)) || key.compare(0, r.key_prefix.size(), r.key_prefix) != 0 || r.times == 0) continue;
    if (r.times > 0) r.times--;
    injected_++;
    return Status(r.status.code(), r.status.message() + ": " + what);
  }
  return Status::OK();
}

Status FaultStore::put(const std::string& key, std::span<const std::byte> data) {
  PBD_RETURN_IF_ERROR(admit(kPut, key));
  return inner_->put(key, data);
}

Status FaultStore::put_if_absent(const std::string& key, std::span<const std::byte> data) {
  PBD_RETURN_IF_ERROR(admit(kPutIfAbsent, key));
  return inner_->put_if_absent(key, data);
}

Status FaultStore::get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) {
  PBD_RETURN_IF_ERROR(admit(kGetRange, key));
  return inner_->get_range(key, offset, length, out);
}

Status FaultStore::get(const std::string& key, std::vector<std::byte>* out) {
  PBD_RETURN_IF_ERROR(admit(kGet, key));
  return inner_->get(key, out);
}

Result<ObjectInfo> FaultStore::head(const std::string& key) {
  if (Status st = admit(kHead, key); !st.ok()) return st;
  return inner_->head(key);
}

Status FaultStore::list(const std::string& prefix, std::vector<ObjectInfo>* out) {
  PBD_RETURN_IF_ERROR(admit(kList, prefix));
  return inner_->list(prefix, out);
}

Status FaultStore::remove(const std::string& key) {
  PBD_RETURN_IF_ERROR(admit(kRemove, key));
  return inner_->remove(key);
}

}  // namespace portalbd
