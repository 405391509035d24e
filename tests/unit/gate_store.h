// GateStore: an ObjectStore wrapper for unit tests that holds segment PUTs
// (and, on request, segment DELETEs) until the test lets them through.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "src/store/object_store.h"
#include "src/util/mutex.h"

namespace portalbd::testing {

// Holds every segment PUT (put or put_if_absent) before it reaches the inner
// store until the test releases that key (or opens the gate for all), so a
// test sees how many PUTs run at once and finishes them in any order.
// hold_removes() likewise stops segment DELETEs until release_removes().
// Other calls pass through.
class GateStore final : public ObjectStore {
 public:
  explicit GateStore(std::shared_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

  void release(const std::string& key) {
    MutexLock lock(&mu_);
    released_.insert(key);
    cv_.notify_all();
  }
  void open() {
    MutexLock lock(&mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Every segment PUT let through takes this long, like a remote store.
  void set_put_delay(std::chrono::milliseconds d) {
    MutexLock lock(&mu_);
    put_delay_ = d;
  }
  void hold_removes() {
    MutexLock lock(&mu_);
    hold_removes_ = true;
  }
  void release_removes() {
    MutexLock lock(&mu_);
    hold_removes_ = false;
    cv_.notify_all();
  }
  // Waits until a segment DELETE is held; false after 10 s.
  bool wait_remove_held() {
    MutexLock lock(&mu_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (removes_held_ == 0) {
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) return removes_held_ > 0;
    }
    return true;
  }
  // Waits until `pred` holds over (held, stored); false after 10 s.
  bool wait_until(const std::function<bool(const std::set<std::string>&, const std::set<std::string>&)>& pred) {
    MutexLock lock(&mu_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!pred(held_, stored_)) {
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) return pred(held_, stored_);
    }
    return true;
  }
  size_t held() {
    MutexLock lock(&mu_);
    return held_.size();
  }
  size_t most_held() {
    MutexLock lock(&mu_);
    return most_held_;
  }
  size_t puts_started() {
    MutexLock lock(&mu_);
    return puts_started_;
  }

  Status put(const std::string& key, std::span<const std::byte> data) override {
    if (key.rfind("segments/", 0) != 0) return inner_->put(key, data);
    return held_put(key, [&] { return inner_->put(key, data); });
  }
  // Segments are created with put_if_absent where the store enforces it
  // (Volume::store_segment): held the same way.
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override {
    if (key.rfind("segments/", 0) != 0) return inner_->put_if_absent(key, data);
    return held_put(key, [&] { return inner_->put_if_absent(key, data); });
  }
  bool supports_conditional_put() const override { return inner_->supports_conditional_put(); }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override {
    return inner_->get_range(key, offset, length, out);
  }
  Status get(const std::string& key, std::vector<std::byte>* out) override { return inner_->get(key, out); }
  Result<ObjectInfo> head(const std::string& key) override { return inner_->head(key); }
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override { return inner_->list(prefix, out); }
  Status remove(const std::string& key) override {
    if (key.rfind("segments/", 0) == 0) {
      MutexLock lock(&mu_);
      ++removes_held_;
      cv_.notify_all();
      while (hold_removes_) cv_.wait(lock);
      --removes_held_;
    }
    return inner_->remove(key);
  }
  std::string url() const override { return inner_->url(); }
  bool persistent() const override { return inner_->persistent(); }

 private:
  Status held_put(const std::string& key, const std::function<Status()>& do_put) {
    std::chrono::milliseconds delay{0};
    {
      MutexLock lock(&mu_);
      ++puts_started_;
      held_.insert(key);
      most_held_ = std::max(most_held_, held_.size());
      cv_.notify_all();
      while (!open_ && released_.count(key) == 0) cv_.wait(lock);
      held_.erase(key);
      delay = put_delay_;
    }
    std::this_thread::sleep_for(delay);
    Status st = do_put();
    MutexLock lock(&mu_);
    stored_.insert(key);
    cv_.notify_all();
    return st;
  }

  const std::shared_ptr<ObjectStore> inner_;
  Mutex mu_;
  CondVar cv_;
  std::set<std::string> released_ GUARDED_BY(mu_);
  std::set<std::string> held_ GUARDED_BY(mu_);
  std::set<std::string> stored_ GUARDED_BY(mu_);
  bool open_ GUARDED_BY(mu_) = false;
  bool hold_removes_ GUARDED_BY(mu_) = false;
  std::chrono::milliseconds put_delay_ GUARDED_BY(mu_) = std::chrono::milliseconds(0);
  size_t removes_held_ GUARDED_BY(mu_) = 0;
  size_t most_held_ GUARDED_BY(mu_) = 0;
  size_t puts_started_ GUARDED_BY(mu_) = 0;
};

}  // namespace portalbd::testing
