// BackgroundGc: runs the volume's garbage collection every interval on its
// own thread, so space comes back without anyone asking (DESIGN invariant 5).
// GC takes the volume's flush lock per pass: it pauses uploads, never I/O
// from clients, and a pass is bounded by GcOptions::max_rewrite_bytes.
//
// An idle volume costs nothing (issue 26): a tick runs a pass only when the
// last one could not have seen everything, which is when
//   * there was no last pass, or it failed, or it did some work (a pass
//     bounded by max_rewrite_bytes may have left some, and its checkpoint
//     used a sequence number);
//   * the volume changed since the last pass began (Volume::change_mark:
//     writes uploaded, snapshots created, deleted or restored, a snapshot
//     reader gone), which also covers the periodic checkpoint, due only
//     after checkpoint_after_seqs sequence numbers were used;
//   * a doomed segment's grace period has ended (next_delete_unix_ms).
// Otherwise the tick is skipped: no pass, no store request. `portalctl gc`
// calls Volume::gc directly and always runs.
//
// Thread-safety: start()/stop() from one thread; passes_run()/
// passes_skipped()/totals() from any.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

#include "src/engine/volume.h"
#include "src/util/mutex.h"

namespace portalbd {

class BackgroundGc {
 public:
  BackgroundGc(std::shared_ptr<Volume> volume, GcOptions options, std::chrono::milliseconds interval)
      : volume_(std::move(volume)), options_(options), interval_(interval) {}
  BackgroundGc(std::shared_ptr<Volume> volume, GcOptions options, uint64_t interval_s)
      : BackgroundGc(std::move(volume), options, std::chrono::seconds(interval_s)) {}
  ~BackgroundGc() { stop(); }

  void start();
  void stop() EXCLUDES(mu_);

  uint64_t passes_run() const { return passes_run_.load(); }
  uint64_t passes_skipped() const { return passes_skipped_.load(); }
  // What the background passes did, summed since start (metrics).
  struct Totals {
    uint64_t passes_failed = 0, segments_deleted = 0, bytes_deleted = 0, segments_rewritten = 0, bytes_rewritten = 0;
  };
  Totals totals() const {
    return {passes_failed_.load(), segments_deleted_.load(), bytes_deleted_.load(), segments_rewritten_.load(),
            bytes_rewritten_.load()};
  }

 private:
  void run() EXCLUDES(mu_);
  // Whether the tick at `now_ms` needs a pass (the rules above).
  bool pass_needed(const std::optional<Volume::ChangeMark>& mark, int64_t now_ms) const;

  const std::shared_ptr<Volume> volume_;
  const GcOptions options_;
  const std::chrono::milliseconds interval_;
  Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
  // The pass thread's own: what the last pass left (run() only).
  bool settled_ = false;                            // the last pass ran, worked, and did nothing
  std::optional<Volume::ChangeMark> settled_mark_;  // the volume as that pass began
  int64_t next_delete_unix_ms_ = 0;                 // its segments waiting (0: none)
  std::atomic<uint64_t> passes_run_{0}, passes_skipped_{0};
  std::atomic<uint64_t> passes_failed_{0}, segments_deleted_{0}, bytes_deleted_{0}, segments_rewritten_{0},
      bytes_rewritten_{0};
};

}  // namespace portalbd
