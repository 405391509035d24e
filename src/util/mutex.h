// Mutex, MutexLock, CondVar: std::mutex, a scoped lock and
// std::condition_variable with clang thread-safety annotations
// (src/util/thread_annotations.h), so that `make thread-safety` checks that
// every GUARDED_BY field is touched with its mutex held. libstdc++'s
// std::mutex, lock_guard and unique_lock carry no annotations, which is why
// these thin wrappers exist. They add nothing at run time: a MutexLock is a
// std::unique_lock<std::mutex>, and CondVar waits on it directly.
//
// Intended use:
//
//   class Queue {
//    public:
//     void push(int v) EXCLUDES(mu_) {
//       {
//         MutexLock lock(&mu_);
//         items_.push_back(v);
//       }
//       ready_.notify_one();
//     }
//     int pop() EXCLUDES(mu_) {
//       MutexLock lock(&mu_);
//       // A loop, not a predicate lambda: clang cannot see that a lambda
//       // runs under the lock, but it checks this condition.
//       while (items_.empty()) ready_.wait(lock);
//       return pop_locked();
//     }
//
//    private:
//     int pop_locked() REQUIRES(mu_) {  // the caller holds mu_
//       int v = items_.front();
//       items_.pop_front();
//       return v;
//     }
//
//     Mutex mu_;
//     CondVar ready_;                           // items_ became non-empty
//     std::deque<int> items_ GUARDED_BY(mu_);
//   };
//
// A timed wait keeps the loop and checks the deadline:
//
//   while (!done_) {
//     if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) break;
//   }
//
// Code that must drop the lock mid-scope (to call out, or to block) uses
// lock.unlock() ... lock.lock(); the analysis tracks both.
//
// Thread-safety: Mutex and CondVar are shared between threads; a MutexLock
// belongs to the thread that made it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "src/util/thread_annotations.h"

namespace portalbd {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  [[nodiscard]] bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }

  // Tells the analysis that the calling thread holds this mutex, where it
  // cannot follow (e.g. a callback that runs under it). No check at run
  // time: std::mutex does not know its owner.
  void assert_held() const ASSERT_CAPABILITY(this) {}

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// A Mutex whose lock can also be waited for until a deadline (a FLUSH that
// must answer within flush_timeout_ms even while the holder is stuck in I/O).
// Not for CondVar, which waits on a Mutex; lock()/unlock() are as cheap as
// Mutex's (both are a pthread mutex).
class CAPABILITY("mutex") TimedMutex {
 public:
  TimedMutex() = default;
  TimedMutex(const TimedMutex&) = delete;
  TimedMutex& operator=(const TimedMutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  [[nodiscard]] bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) TRY_ACQUIRE(true) {
#if defined(__SANITIZE_THREAD__)
    // For a steady_clock deadline libstdc++ calls pthread_mutex_clocklock,
    // which GCC 12's ThreadSanitizer does not intercept: it would not see the
    // lock taken and report its unlock. The same wait on the system clock
    // goes through pthread_mutex_timedlock, which it does (TSan builds only).
    return mu_.try_lock_until(std::chrono::system_clock::now() +
                              std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now()));
#else
    return mu_.try_lock_until(deadline);
#endif
  }
  void assert_held() const ASSERT_CAPABILITY(this) {}

 private:
  std::timed_mutex mu_;
};

// Holds a Mutex for its scope. unlock() and lock() drop and retake it inside
// the scope; the destructor releases it only if it is held then.
// Pass a MutexLock only to CondVar: clang 14 cannot follow a lock into
// another function, so a helper that needs the mutex says REQUIRES(mu_).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : lock_(mu->mu_) {}
  // Not held yet: lock() takes it (for a lock some paths never need).
  MutexLock(Mutex* mu, std::defer_lock_t) EXCLUDES(mu) : lock_(mu->mu_, std::defer_lock) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() RELEASE() { lock_.unlock(); }
  void lock() ACQUIRE() { lock_.lock(); }

 private:
  friend class CondVar;
  std::unique_lock<std::mutex> lock_;
};

// A condition variable for a Mutex held through a MutexLock.
// REQUIRES (every wait): `lock` holds its mutex. The wait releases it while
// blocked and holds it again on return, so to the analysis it stays held.
// Waits may wake spuriously: wait in a loop over the condition.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void wait(MutexLock& lock) { cv_.wait(lock.lock_); }

  template <class Rep, class Period>
  std::cv_status wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& timeout) {
    return cv_.wait_for(lock.lock_, timeout);
  }

  template <class Clock, class Duration>
  std::cv_status wait_until(MutexLock& lock, const std::chrono::time_point<Clock, Duration>& deadline) {
    return cv_.wait_until(lock.lock_, deadline);
  }

  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace portalbd
