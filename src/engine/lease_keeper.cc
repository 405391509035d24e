#include "src/engine/lease_keeper.h"

#include <chrono>

#include "src/log/log.h"
#include "src/util/thread_name.h"

namespace portalbd {

LeaseKeeper::LeaseKeeper(std::shared_ptr<WriterLease> lease, std::function<uint64_t()> activity)
    : lease_(std::move(lease)), activity_(std::move(activity)) {}

void LeaseKeeper::start() {
  last_activity_ = activity_();
  thread_ = std::thread([this] {
    name_this_thread("lease");
    const auto period = std::chrono::milliseconds(std::max<int64_t>(lease_->ttl_ms() / 4, 1));
    MutexLock lock(&mu_);
    for (;;) {
      const auto next = std::chrono::steady_clock::now() + period;
      while (!stopping_ && std::chrono::steady_clock::now() < next) cv_.wait_until(lock, next);
      if (stopping_) return;
      lock.unlock();
      tick();
      lock.lock();
    }
  });
}

void LeaseKeeper::stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseKeeper::tick() {
  const uint64_t now = activity_();
  const bool writing = now != last_activity_;
  last_activity_ = now;
  Status st;
  if (writing) {
    st = lease_->renew();
  } else if (lease_->remaining_ms() < lease_->ttl_ms()) {
    st = lease_->renew(lease_->idle_renew_ms() + lease_->ttl_ms());
  }
  if (!st.ok() && !st.is(Status::Code::kFenced)) {
    log::get("engine")->warn("could not renew the writer lease error={}", log::quote(st.ToString()));
  }
}

}  // namespace portalbd
