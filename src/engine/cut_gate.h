// CutGate: lets many mutating requests run at once, and lets a snapshot or
// restore find a moment when none is half-way through ("the cut").
//
// Requests hold an Entry for their whole duration (a read-modify-write or a
// zero of partial blocks takes several steps that must land on one side of the
// cut). close() waits until no request is inside and keeps new ones out until
// open(). Writer-preferring: a pending close() stops new entries, so a steady
// stream of writes cannot starve a snapshot.
//
// Thread-safety: all methods are safe concurrently.
#pragma once

#include "src/util/mutex.h"

namespace portalbd {

class CutGate {
 public:
  class Entry {
   public:
    explicit Entry(CutGate& g) : g_(g) { g_.enter(); }
    ~Entry() { g_.leave(); }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

   private:
    CutGate& g_;
  };

  // Waits until no request is inside; new requests wait until open().
  void close() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (closed_) cv_.wait(lock);  // one cut at a time
    closed_ = true;
    while (inside_ != 0) cv_.wait(lock);
  }
  void open() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    closed_ = false;
    cv_.notify_all();
  }

 private:
  void enter() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (closed_) cv_.wait(lock);
    ++inside_;
  }
  void leave() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (--inside_ == 0) cv_.notify_all();
  }

  Mutex mu_;
  CondVar cv_;
  int inside_ GUARDED_BY(mu_) = 0;
  bool closed_ GUARDED_BY(mu_) = false;
};

}  // namespace portalbd
