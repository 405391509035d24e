// LeaseKeeper: renews a WriterLease on its own timer, apart from the flush
// pipeline, so a flusher busy with a slow upload round (or an idle one) never
// delays a renewal, and uploads never wait for one.
//
// Every ttl/4 it looks at how many segments the volume wrote since its last
// look. Writing: renew for ttl_ms, so a writer that dies mid-work frees the
// volume within ttl_ms. Idle: renew only when the claim would lapse within
// ttl_ms, and then for idle_renew_ms + ttl_ms, so an idle volume sends
// storage nothing between those renewals (docs/design.md, "Idle volumes").
//
// Thread-safety: start() and stop() from one thread (the volume's owner).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "src/engine/writer_lease.h"
#include "src/util/mutex.h"

namespace portalbd {

class LeaseKeeper {
 public:
  // `activity` counts the writes that need the lease kept short (segments
  // stored); any change between two ticks means "writing".
  LeaseKeeper(std::shared_ptr<WriterLease> lease, std::function<uint64_t()> activity);
  ~LeaseKeeper() { stop(); }

  void start();
  // Stops the timer; no renewal runs after it returns. Idempotent.
  void stop();
  // One tick's decision, run by the timer (public for tests).
  void tick();

 private:
  const std::shared_ptr<WriterLease> lease_;
  const std::function<uint64_t()> activity_;
  uint64_t last_activity_ = 0;  // timer thread only
  Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace portalbd
