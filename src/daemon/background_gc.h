// BackgroundGc: runs the volume's garbage collection every interval on its
// own thread, so space comes back without anyone asking (DESIGN invariant 5).
// GC takes the volume's flush lock per pass: it pauses uploads, never I/O
// from clients, and a pass is bounded by GcOptions::max_rewrite_bytes.
// Thread-safety: start()/stop() from one thread.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "src/engine/volume.h"

namespace portalbd {

class BackgroundGc {
 public:
  BackgroundGc(std::shared_ptr<Volume> volume, GcOptions options, uint64_t interval_s)
      : volume_(std::move(volume)), options_(options), interval_s_(interval_s) {}
  ~BackgroundGc() { stop(); }

  void start();
  void stop();

 private:
  void run();

  const std::shared_ptr<Volume> volume_;
  const GcOptions options_;
  const uint64_t interval_s_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace portalbd
