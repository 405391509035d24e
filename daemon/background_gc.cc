#include "daemon/background_gc.h"

#include "src/log/log.h"
#include "src/util/clock.h"
#include "src/util/thread_name.h"

namespace portalbd {
namespace {

// Work a pass did that may leave more, or that changed the volume.
bool did_work(const GcReport& r) {
  return r.layers_dropped + r.layers_merged + r.segments_rewritten + r.buffers_compacted + r.segments_doomed +
             r.segments_deleted + r.checkpoint_seq >
         0;
}

}  // namespace

void BackgroundGc::start() {
  if (interval_.count() == 0) return;
  thread_ = std::thread([this] {
    name_this_thread("gc");
    run();
  });
}

void BackgroundGc::stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool BackgroundGc::pass_needed(const std::optional<Volume::ChangeMark>& mark, int64_t now_ms) const {
  if (!settled_ || !mark || !settled_mark_ || !(*mark == *settled_mark_)) return true;
  return next_delete_unix_ms_ != 0 && now_ms >= next_delete_unix_ms_;
}

void BackgroundGc::run() {
  MutexLock lock(&mu_);
  for (;;) {
    const auto deadline = std::chrono::steady_clock::now() + interval_;
    while (!stopping_) {
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) break;
    }
    if (stopping_) return;
    lock.unlock();
    // Taken before the pass: a change while it runs shows at the next tick.
    const std::optional<Volume::ChangeMark> mark = volume_->change_mark();
    if (!pass_needed(mark, now_unix_ms())) {
      passes_skipped_++;
      lock.lock();
      continue;
    }
    passes_run_++;
    auto report = volume_->gc(options_);
    if (!report.ok()) {
      passes_failed_++;
      settled_ = false;
      log::get("gc")->warn("background gc pass failed error={}", log::quote(report.status().ToString()));
    } else {
      segments_deleted_ += report->segments_deleted;
      bytes_deleted_ += report->bytes_deleted;
      segments_rewritten_ += report->segments_rewritten;
      bytes_rewritten_ += report->bytes_rewritten;
      settled_ = !did_work(*report);
      settled_mark_ = mark;
      next_delete_unix_ms_ = report->next_delete_unix_ms;
    }
    lock.lock();
  }
}

}  // namespace portalbd
