// The flush pipeline: sealing write buffers, uploading them as segments, and
// committing them to the index. See the state machine in volume.h.
#include <chrono>

#include "src/util/clock.h"
#include "src/engine/volume.h"
#include "src/log/log.h"

namespace portalbd {
// ACTIVE -> SEALED. Cheap: moves the map, no copying of data.
void Volume::seal_active_locked() {
  if (active_.empty()) return;
  auto sealed = std::make_shared<Sealed>();
  sealed->seq = next_seq_++;
  sealed->layer = live_;
  sealed->blocks = std::move(active_);
  sealed->bytes = active_bytes_;
  active_ = {};
  sealing_bytes_ += active_bytes_;
  active_bytes_ = 0;
  sealing_.push_back(std::move(sealed));
}

// SEALED -> UPLOADED -> COMMITTED for one buffer.
Status Volume::upload_one(const std::shared_ptr<Sealed>& sealed) {
  if (!sealed->footer) {
    SegmentBuilder builder(sealed->seq, sealed->layer->id, opts_.codec, now_unix_ms());
    builder.reserve(sealed->bytes);
    for (const auto& [lba, node] : sealed->blocks.entries()) {
      const BlockSource& src = node.value;
      if (src.state == ExtentState::kData) {
        builder.add_data(lba, std::span<const std::byte>(src.bytes->data() + src.byte_offset, node.length * kBlockSize));
      } else {
        builder.add_empty(lba, node.length, src.state);
      }
    }
    sealed->object = builder.finish();
    sealed->footer = builder.footer();
  }
  const std::string key = segment_key(sealed->seq);
  // Never write over another daemon's volume: see WriterLease.
  if (opts_.lease) PBD_RETURN_IF_ERROR(opts_.lease->check().With("upload " + key));
  PBD_RETURN_IF_ERROR(store_->put(key, sealed->object).With("upload " + key));
  PBD_RETURN_IF_ERROR(index_->apply_segment(*sealed->footer, sealed->object.size()).With("index " + key));
  segments_written_++;
  bytes_uploaded_ += sealed->object.size();

  std::lock_guard lock(mu_);
  for (const auto& e : sealed->footer->entries) {
    BlockSource src;
    src.state = e.state;
    if (e.state == ExtentState::kData) {
      src.seq = sealed->seq;
      src.frame = sealed->footer->frames[e.frame];
      src.block_in_frame = e.block_in_frame;
    }
    sealed->layer->assign(e.lba, e.nblocks, src);
  }
  // The buffer is now redundant with its layer's map: drop it in the same
  // critical section so no reader sees neither.
  sealing_.pop_front();
  sealing_bytes_ -= sealed->bytes;
  space_cv_.notify_all();
  return Status::OK();
}

Status Volume::upload_through(uint64_t last_seq) {
  for (;;) {
    std::shared_ptr<Sealed> next;
    {
      std::lock_guard lock(mu_);
      if (sealing_.empty() || sealing_.front()->seq > last_seq) return Status::OK();
      next = sealing_.front();
    }
    Status st = upload_one(next);
    if (!st.ok()) {
      flush_errors_++;
      log::get("engine")->error("flush failed, data stays buffered for retry seq={} error={}", next->seq,
                                log::quote(st.ToString()));
      return st;
    }
  }
}

Status Volume::flush() {
  std::lock_guard flush_lock(flush_mu_);
  uint64_t target;
  {
    std::lock_guard lock(mu_);
    seal_active_locked();
    target = next_seq_ - 1;
  }
  flushes_++;
  PBD_RETURN_IF_ERROR(upload_through(target));
  // A root change whose record did not reach storage: a flush that returns OK
  // must leave storage able to rebuild what it acknowledges.
  if (roots_dirty_) PBD_RETURN_IF_ERROR(write_roots_record().With("record snapshots in storage"));
  return Status::OK();
}

void Volume::flusher_loop() {
  using namespace std::chrono;
  const auto interval = opts_.flush_interval_ms > 0 ? milliseconds(opts_.flush_interval_ms) : hours(24 * 365);
  last_renew_ = steady_clock::now();
  auto next_timer = steady_clock::now() + interval;
  auto backoff = milliseconds(100);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      auto wake = next_timer;
      if (opts_.lease) wake = std::min(wake, last_renew_ + milliseconds(opts_.lease->ttl_ms() / 4));
      flusher_cv_.wait_until(lock, wake, [&] { return closing_ || !sealing_.empty(); });
      if (closing_) return;
      if (steady_clock::now() >= next_timer) {
        seal_active_locked();  // the timer flush
        next_timer = steady_clock::now() + interval;
      }
    }
    if (opts_.lease && steady_clock::now() - last_renew_ >= milliseconds(opts_.lease->ttl_ms() / 4)) {
      last_renew_ = steady_clock::now();
      if (Status st = opts_.lease->renew(); !st.ok() && !st.is(Status::Code::kFenced)) {
        log::get("engine")->warn("could not renew the writer lease error={}", log::quote(st.ToString()));
      }
    }
    {
      std::lock_guard lock(mu_);
      if (sealing_.empty()) continue;
    }
    std::lock_guard flush_lock(flush_mu_);
    Status st = upload_through(UINT64_MAX);
    if (st.ok() && roots_dirty_) st = write_roots_record();
    if (!st.ok()) {
      // Storage trouble: wait before the next try, growing to 10 s.
      std::unique_lock lock(mu_);
      flusher_cv_.wait_for(lock, backoff, [&] { return closing_; });
      backoff = std::min<milliseconds>(backoff * 2, milliseconds(10000));
    } else {
      backoff = milliseconds(100);
    }
  }
}

Status Volume::close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return Status::OK();
    closing_ = true;
  }
  flusher_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  uint64_t dirty;
  {
    std::lock_guard lock(mu_);
    dirty = active_bytes_ + sealing_bytes_;
  }
  const uint64_t before = segments_written_;
  Status st = flush();
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  space_cv_.notify_all();
  auto logger = log::get("engine");
  if (st.ok() && opts_.lease) {
    if (Status rel = opts_.lease->release(); !rel.ok()) {
      logger->warn("could not release the writer lease error={}", log::quote(rel.ToString()));
    }
  }
  if (st.ok()) {
    logger->info("volume closed, write buffer flushed dirty_bytes={} segments={}", dirty, segments_written_ - before);
  } else {
    logger->error("volume closed with unflushed data dirty_bytes={} error={}", dirty, log::quote(st.ToString()));
  }
  return st;
}

Volume::~Volume() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    closed_ = true;
  }
  flusher_cv_.notify_all();
  space_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

VolumeStats Volume::stats() {
  VolumeStats s;
  s.size_bytes = size_bytes_;
  {
    std::lock_guard lock(mu_);
    s.dirty_bytes = active_bytes_ + sealing_bytes_;
    s.next_seq = next_seq_;
  }
  if (auto idx = index_->stats(); idx.ok()) {
    s.segments = idx->segments;
    s.bytes_stored = idx->bytes_stored;
  }
  if (auto v = index_->get_meta("checkpoint_unix_ms"); v.ok() && v->has_value()) {
    s.last_checkpoint_unix_ms = std::stoll(**v);
  }
  if (auto v = index_->get_meta("checkpoint_seq"); v.ok() && v->has_value()) s.last_checkpoint_seq = std::stoull(**v);
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, layer] : layers_) s.bytes_live += layer->data_bytes;
  }
  s.segments_written = segments_written_;
  s.bytes_uploaded = bytes_uploaded_;
  s.flushes = flushes_;
  s.flush_errors = flush_errors_;
  s.cache_bytes = cache_.bytes();
  s.cache_hits = cache_.hits();
  s.cache_misses = cache_.misses();
  s.replayed_segments = replayed_segments_;
  return s;
}

}  // namespace portalbd
