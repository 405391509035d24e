// Flattener: the thread that keeps the LayerSet's flattened base behind the
// live layer (layer_set.h, "The flattened base"). It runs `step` while step
// says more work follows, then sleeps until kick() or a second passes (a
// layer waits for its last writes to commit before it is folded, and nobody
// kicks when they do).
//
// Thread-safety: kick() from any thread; stop() from the owner.
#pragma once

#include <functional>
#include <thread>

#include "src/util/mutex.h"

namespace portalbd {

class Flattener {
 public:
  // `step` does one bounded piece of work under the engine mutex and returns
  // true when more may follow at once.
  explicit Flattener(std::function<bool()> step);
  ~Flattener() { stop(); }
  Flattener(const Flattener&) = delete;
  Flattener& operator=(const Flattener&) = delete;

  // There may be work (a snapshot was created, restored, GC merged layers).
  void kick() EXCLUDES(mu_);
  // No step runs after it returns. Idempotent.
  void stop() EXCLUDES(mu_);

 private:
  void run() EXCLUDES(mu_);

  const std::function<bool()> step_;
  Mutex mu_;
  CondVar cv_;
  bool kicked_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace portalbd
