// OpLocks: which volumes, names and snapshots an RPC is working on, so a
// second call touching one of them is answered ABORTED at once ("an
// operation is pending for this volume", as the CSI spec puts it; the
// sidecars retry) instead of waiting behind a long copy, while calls on other
// volumes go ahead. Keys are "name:<csi name>", "vol:<volume id>",
// "snapname:<csi snapshot name>".
//
// Thread-safety: safe from any thread; a Hold releases its keys when
// destroyed.
#pragma once

#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace portalbd::csi {

class OpLocks {
 public:
  class Hold {
   public:
    Hold(OpLocks* owner, std::vector<std::string> keys) : owner_(owner), keys_(std::move(keys)) {}
    Hold(Hold&& other) noexcept : owner_(other.owner_), keys_(std::move(other.keys_)) { other.owner_ = nullptr; }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    Hold& operator=(Hold&&) = delete;
    ~Hold() {
      if (owner_ != nullptr) owner_->release(keys_);
    }

   private:
    OpLocks* owner_;
    std::vector<std::string> keys_;
  };

  // All of `keys` (empty ones ignored), or none and the first key held by
  // another call.
  std::optional<Hold> try_hold(const std::vector<std::string>& keys, std::string* busy_key) {
    std::lock_guard lock(mu_);
    std::vector<std::string> wanted;
    for (const auto& k : keys) {
      if (k.empty() || k.back() == ':') continue;
      if (held_.count(k) != 0) {
        *busy_key = k;
        return std::nullopt;
      }
      wanted.push_back(k);
    }
    for (const auto& k : wanted) held_.insert(k);
    return Hold(this, std::move(wanted));
  }

 private:
  void release(const std::vector<std::string>& keys) {
    std::lock_guard lock(mu_);
    for (const auto& k : keys) held_.erase(k);
  }

  std::mutex mu_;
  std::set<std::string> held_;  // guarded by mu_
};

}  // namespace portalbd::csi
