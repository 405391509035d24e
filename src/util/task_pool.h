// TaskPool: a fixed set of worker threads that run submitted jobs in
// submission order, for bounded parallel I/O (the volume's segment uploads).
//
// Ownership: the pool owns its threads. The destructor lets the workers finish
// every job already submitted, then joins them. A pool of zero threads runs
// each job inline, inside submit(): the sequential configuration costs no
// hand-off between threads.
//
// Thread-safety: submit() may be called from any thread. A job must not throw
// (it runs on a worker thread, where nothing would catch it) and must not wait
// for a job submitted after it (with one thread, that never runs).
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "src/util/mutex.h"

namespace portalbd {

class TaskPool {
 public:
  // `name`: what the threads are called (src/util/thread_name.h).
  explicit TaskPool(size_t threads, const char* name = "pool");
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Runs `job` on a worker as soon as one is free (inline with zero threads).
  void submit(std::function<void()> job) EXCLUDES(mu_);
  size_t threads() const { return workers_.size(); }

 private:
  void work() EXCLUDES(mu_);

  Mutex mu_;
  CondVar cv_;  // a job was queued, or stopping_
  std::deque<std::function<void()>> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::jthread> workers_;  // last: joined before the rest goes
};

}  // namespace portalbd
