#include "src/engine/flattener.h"

#include <chrono>

#include "src/util/thread_name.h"

namespace portalbd {

Flattener::Flattener(std::function<bool()> step) : step_(std::move(step)) {
  thread_ = std::thread([this] {
    name_this_thread("flatten");
    run();
  });
}

void Flattener::kick() {
  {
    MutexLock lock(&mu_);
    kicked_ = true;
  }
  cv_.notify_all();
}

void Flattener::stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Flattener::run() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    kicked_ = false;
    lock.unlock();
    bool more = true;
    // Each step takes the engine mutex for a bounded piece of work only.
    for (int i = 0; more && i < 64; i++) more = step_();
    lock.lock();
    if (more) continue;  // re-check stopping_ between bursts
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!stopping_ && !kicked_) {
      if (cv_.wait_until(lock, until) == std::cv_status::timeout) break;
    }
  }
}

}  // namespace portalbd
