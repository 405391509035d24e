#include "src/daemon/background_gc.h"

#include "src/log/log.h"

namespace portalbd {

void BackgroundGc::start() {
  if (interval_s_ == 0) return;
  thread_ = std::thread([this] { run(); });
}

void BackgroundGc::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackgroundGc::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (cv_.wait_for(lock, std::chrono::seconds(interval_s_), [&] { return stopping_; })) return;
    lock.unlock();
    auto report = volume_->gc(options_);
    if (!report.ok()) {
      log::get("gc")->warn("background gc pass failed error={}", log::quote(report.status().ToString()));
    }
    lock.lock();
  }
}

}  // namespace portalbd
