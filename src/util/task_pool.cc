#include "src/util/task_pool.h"

#include "src/util/thread_name.h"

namespace portalbd {

TaskPool::TaskPool(size_t threads, const char* name) {
  workers_.reserve(threads);
  for (size_t i = 0; i < threads; ++i)
    workers_.emplace_back([this, name] {
      name_this_thread(name);
      work();
    });
}

TaskPool::~TaskPool() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  workers_.clear();  // joins; each worker drains the queue before it leaves
}

void TaskPool::submit(std::function<void()> job) {
  if (workers_.empty()) {
    job();
    return;
  }
  {
    MutexLock lock(&mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void TaskPool::work() {
  for (;;) {
    std::function<void()> job;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && queue_.empty()) cv_.wait(lock);
      if (queue_.empty()) return;  // stopping, and nothing left to run
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

}  // namespace portalbd
