// The flush pipeline: sealing write buffers, uploading them as segments, and
// committing them to the index. See the state machine in flush_pipeline.h.
#include "src/engine/flush_pipeline.h"

#include <algorithm>
#include <cassert>
#include <chrono>

#include "src/log/log.h"
#include "src/util/clock.h"
#include "src/util/thread_name.h"

namespace portalbd {
namespace {

// The longest wait between upload retries: 5 s, or less so that at least four
// retries fit in flush_timeout_ms (writers held by a full buffer resume soon
// after storage returns, well before they would give up).
std::chrono::milliseconds max_retry_backoff(uint64_t flush_timeout_ms) {
  using std::chrono::milliseconds;
  if (flush_timeout_ms == 0) return milliseconds(5000);
  return std::clamp(milliseconds(flush_timeout_ms / 4), milliseconds(100), milliseconds(5000));
}

}  // namespace

FlushPipeline::FlushPipeline(std::shared_ptr<ObjectStore> store, LayerSet& layers, const VolumeOptions& opts)
    : store_(std::move(store)),
      layers_(layers),
      opts_(opts),
      upload_window_(std::clamp<uint32_t>(opts_.upload_concurrency, 1, kMaxUploadWindow)),
      upload_pool_(std::make_unique<TaskPool>(upload_window_, "upload")) {}

FlushPipeline::~FlushPipeline() {
  {
    MutexLock lock(&layers_.mu());
    closing_ = true;
    closed_ = true;
  }
  flusher_cv_.notify_all();
  space_cv_.notify_all();
  retry_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

void FlushPipeline::set_sequence_locked(uint64_t next_seq, uint64_t last_write_seq, uint64_t max_wseq) {
  next_seq_ = next_seq;
  last_write_seq_ = last_write_seq;
  last_wseq_ = max_wseq;
  committed_wseq_ = max_wseq;
}

void FlushPipeline::start(meta::Index* index) {
  index_ = index;
  if (!opts_.ephemeral) {
    flusher_ = std::thread([this] {
      name_this_thread("flusher");
      flusher_loop();
    });
  }
}

void FlushPipeline::transition(Sealed& sealed, Stage to) {
  [[maybe_unused]] const Stage from = sealed.stage;
  assert((from == Stage::kSealed && to == Stage::kPutting) || (from == Stage::kPutting && to == Stage::kStored) ||
         (from == Stage::kPutting && to == Stage::kFailed) || (from == Stage::kFailed && to == Stage::kSealed));
  sealed.stage = to;
}

// ---- the write buffer

bool FlushPipeline::has_space_locked(uint64_t charged_bytes) const {
  return closed_ || active_bytes_ + sealing_bytes_ + charged_bytes <= opts_.write_buffer_bytes || sealing_.empty();
}

Status FlushPipeline::wait_for_space(MutexLock& lock, uint64_t charged_bytes) {
  // Back-pressure: wait while the buffers are full and uploads are pending,
  // for as long as storage keeps accepting uploads (see flush_timeout_ms).
  if (has_space_locked(charged_bytes)) return Status::OK();
  const auto started = std::chrono::steady_clock::now();
  const std::chrono::milliseconds timeout(opts_.flush_timeout_ms);
  while (!has_space_locked(charged_bytes)) {
    space_cv_.wait_for(lock, std::chrono::milliseconds(250));
    if (!has_space_locked(charged_bytes) && timeout.count() > 0 && stalled_for_locked(started) >= timeout) {
      return Status::Unavailable("the write buffer is full and storage accepted no upload for " +
                                 std::to_string(timeout.count()) +
                                 " ms (lsm.flush_timeout_ms): " + last_storage_error_);
    }
  }
  return Status::OK();
}

Status FlushPipeline::buffer(uint64_t lba, uint64_t nblocks, BlockSource src, uint64_t charged_bytes, uint64_t* wseq) {
  MutexLock lock(&layers_.mu());
  PBD_RETURN_IF_ERROR(wait_for_space(lock, charged_bytes));
  PBD_RETURN_IF_ERROR(writable_locked());
  active_max_wseq_ = ++last_wseq_;
  if (wseq != nullptr) *wseq = last_wseq_;
  active_.assign(lba, nblocks, std::move(src));
  active_bytes_ += charged_bytes;
  seal_if_full_locked();
  return Status::OK();
}

Status FlushPipeline::writable_locked() const {
  if (closed_) return Status::Cancelled("volume is closed");
  if (opts_.lease && opts_.lease->fenced()) {
    return Status::Fenced("another portalbd took over this volume; writes are refused");
  }
  return Status::OK();
}

void FlushPipeline::overlay_buffers_locked(const std::vector<const Layer*>& chain, bool live, uint64_t lba,
                                           uint64_t nblocks, ExtentMap<BlockSource>* view) const {
  auto overlay = [&](const ExtentMap<BlockSource>& m) {
    m.visit(lba, nblocks, [&](uint64_t s, uint64_t n, const BlockSource& src) { view->assign(s, n, src); });
  };
  // Sealed buffers not yet committed to a layer of this chain. Buffers
  // commit in sequence order, so they are all newer than the layers' maps.
  for (const auto& sealed : sealing_) {
    if (std::find(chain.begin(), chain.end(), sealed->layer.get()) != chain.end()) overlay(sealed->blocks);
  }
  if (live) overlay(active_);
}

bool FlushPipeline::has_uncommitted_locked(const Layer& layer) const {
  return std::any_of(sealing_.begin(), sealing_.end(), [&](const auto& s) { return s->layer.get() == &layer; });
}

void FlushPipeline::seal_active_locked() {
  if (active_.empty()) return;
  auto sealed = std::make_shared<Sealed>();
  sealed->seq = next_seq_++;
  sealed->gen = ++seal_gen_;
  // Replay keeps this segment only if the one before it was stored too
  // (SegmentFooter::after_seq): crash = a prefix, whatever the window.
  sealed->after_seq = sealing_.empty() ? 0 : sealing_.back()->seq;
  // And names its predecessor always, so replay finds one missing from the
  // middle of the log (SegmentFooter::prev_seq).
  sealed->prev_seq = last_write_seq_;
  last_write_seq_ = sealed->seq;
  sealed->max_wseq = active_max_wseq_;
  active_max_wseq_ = 0;
  sealed->layer = layers_.live_locked();
  sealed->blocks = std::move(active_);
  sealed->bytes = active_bytes_;
  active_ = {};
  sealing_bytes_ += active_bytes_;
  active_bytes_ = 0;
  sealing_.push_back(std::move(sealed));
  upload_cv_.notify_all();  // a running upload_through() may have room for it
}

void FlushPipeline::seal_if_full_locked() {
  if (active_bytes_ < opts_.segment_bytes || seals_held_) return;
  seal_active_locked();
  flusher_cv_.notify_one();
}

void FlushPipeline::replay_locked(uint64_t lba, uint64_t nblocks, BlockSource src, uint64_t charged_bytes,
                                  uint64_t wseq) {
  assert(wseq > last_wseq_);
  active_max_wseq_ = last_wseq_ = wseq;
  active_.assign(lba, nblocks, std::move(src));
  active_bytes_ += charged_bytes;
  seal_if_full_locked();
}

void FlushPipeline::nudge() {
  {
    MutexLock lock(&layers_.mu());
    if (seals_held_ || active_.empty()) return;
    seal_active_locked();
  }
  flusher_cv_.notify_one();
}

uint64_t FlushPipeline::take_seqs_locked(uint64_t count) {
  const uint64_t first = next_seq_;
  next_seq_ += count;
  return first;
}

uint64_t FlushPipeline::covering_gen_locked() const { return active_.empty() ? seal_gen_ : seal_gen_ + 1; }

// ---- uploads

// The work of PUTTING. The buffer's blocks are immutable once sealed, so
// encoding needs no lock; readers keep using them until the commit.
Status FlushPipeline::put_segment(Sealed& sealed) {
  if (!sealed.footer) {
    SegmentBuilder builder(sealed.seq, sealed.layer->id, opts_.codec, now_unix_ms(), sealed.after_seq, sealed.prev_seq);
    builder.set_writes(sealed.max_wseq, writer_);
    {
      MutexLock lock(&layers_.mu());
      if (spare_object_.capacity() != 0) builder.reuse(std::move(spare_object_));
      spare_object_ = {};
    }
    builder.reserve(sealed.bytes);
    for (const auto& [lba, node] : sealed.blocks.entries()) {
      const BlockSource& src = node.value;
      if (src.state == ExtentState::kData) {
        builder.add_data(lba,
                         std::span<const std::byte>(src.bytes->data() + src.byte_offset, node.length * kBlockSize));
      } else {
        builder.add_empty(lba, node.length, src.state);
      }
    }
    sealed.object = std::make_shared<std::vector<std::byte>>(builder.finish());
    sealed.object_bytes = sealed.object->size();
    sealed.footer = builder.footer();
  }
  PBD_RETURN_IF_ERROR(store_segment(segment_key(sealed.seq), sealed.object));
  if (stored_hook_) stored_hook_(sealed.seq, sealed.object, sealed.footer->frames);
  // Stored: this buffer needs the bytes no more (U3, U5). Their memory goes
  // to the next segment to encode, if one is coming and nothing else kept the
  // object (a memory:// store shares it, put_shared; the disk cache holds it
  // until its thread has written the frames).
  // Kept while another segment waits to upload or is half full in the
  // active buffer (a sequential writer fills the next one as this one
  // uploads); else freed. The store's own spares (an encrypting store's
  // sealed copies) follow the same rule.
  std::shared_ptr<std::vector<std::byte>> object = std::move(sealed.object);
  bool more_coming;
  {
    MutexLock lock(&layers_.mu());
    more_coming = active_bytes_ >= opts_.segment_bytes / 2 ||
                  std::any_of(sealing_.begin(), sealing_.end(),
                              [](const std::shared_ptr<Sealed>& s) { return s->stage == Stage::kSealed; });
    if (more_coming && object.use_count() == 1 && object->capacity() > spare_object_.capacity()) {
      spare_object_ = std::move(*object);
    }
  }
  if (!more_coming) store_->release_spare_memory();
  return Status::OK();
}

Status FlushPipeline::store_segment(const std::string& key,
                                    const std::shared_ptr<const std::vector<std::byte>>& object) {
  // Never write over another daemon's volume: see WriterLease.
  if (opts_.lease) PBD_RETURN_IF_ERROR(opts_.lease->check().With("upload " + key));
  if (!store_->supports_conditional_put()) return store_->put_shared(key, object).With("upload " + key);
  Status st = store_->put_if_absent(key, *object);
  if (!st.is(Status::Code::kAlreadyExists)) return st.With("upload " + key);
  // An earlier attempt of ours that landed although its answer was lost
  // holds exactly these bytes (a segment's footer names its writer's clock
  // and layer, so another writer's object differs). Anything else is another
  // writer's segment under a sequence number this daemon took: its view of
  // the log is wrong, and it must not write on.
  std::vector<std::byte> existing;
  if (Status got = store_->get(key, &existing); !got.ok()) {
    return Status::Unavailable("upload " + key + ": the key exists but cannot be read back: " + got.ToString());
  }
  if (existing == *object) return Status::OK();
  const std::string why = "storage already holds another writer's " + key;
  if (opts_.lease) opts_.lease->fence(why);
  return Status::Fenced(why + "; this daemon no longer writes");
}

Status FlushPipeline::confirm_writer(const std::string& what) {
  if (!opts_.lease) return Status::OK();
  return opts_.lease->check().With(what);
}

// STORED -> COMMITTED.
Status FlushPipeline::commit_segment(const std::shared_ptr<Sealed>& sealed) {
  const std::string key = segment_key(sealed->seq);
  uint64_t data_blocks = 0;
  PBD_RETURN_IF_ERROR(index_->apply_segment(*sealed->footer, sealed->object_bytes, &data_blocks).With("index " + key));
  segments_written_++;
  bytes_uploaded_ += sealed->object_bytes;

  uint64_t committed_wseq;
  {
    MutexLock lock(&layers_.mu());
    assert(!sealing_.empty() && sealing_.front() == sealed && sealed->stage == Stage::kStored);
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
    if (sealed->layer->paged()) sealed->layer->data_bytes = data_blocks * kBlockSize;
    // The buffer is now redundant with its layer's map: drop it in the same
    // critical section so no reader sees neither.
    sealing_.pop_front();
    sealing_bytes_ -= sealed->bytes;
    committed_gen_ = sealed->gen;
    committed_wseq_ = std::max(committed_wseq_, sealed->max_wseq);
    last_upload_ok_ = std::chrono::steady_clock::now();
    if (failing_since_unix_ms_ != 0) {
      log::get("engine")->warn("storage accepts uploads again, catching up outage_ms={} seq={} dirty_bytes={}",
                               now_unix_ms() - failing_since_unix_ms_, sealed->seq, active_bytes_ + sealing_bytes_);
      failing_since_unix_ms_ = 0;
      last_storage_error_.clear();
    }
    committed_wseq = committed_wseq_;
  }
  space_cv_.notify_all();
  if (on_commit_) on_commit_(committed_wseq);
  return Status::OK();
}

std::chrono::milliseconds FlushPipeline::stalled_for_locked(std::chrono::steady_clock::time_point since) const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now() - std::max(since, last_upload_ok_));
}

// Under sustained writes "until nothing is sealed" may never come, and
// whoever uploads holds upload_mu_ all along. A round therefore commits what
// is sealed when it starts, while it keeps the window full of PUTs, so that
// with several PUTs at once the window does not run dry at every round's end.
// Those PUTs finish within the round (U4) and commit in the next.
Status FlushPipeline::upload_sealed(std::optional<TimePoint> give_up_from) {
  uint64_t last;
  {
    MutexLock lock(&layers_.mu());
    if (sealing_.empty()) return Status::OK();
    last = sealing_.back()->seq;
  }
  return upload_through(last, /*fill_window=*/true, give_up_from);
}

FlushPipeline::TimePoint FlushPipeline::give_up_at_locked(TimePoint since) const {
  if (opts_.flush_timeout_ms == 0) return TimePoint::max();
  return std::max(since, last_upload_ok_) + std::chrono::milliseconds(opts_.flush_timeout_ms);
}

bool FlushPipeline::wait_for_uploads_locked(MutexLock& lock, const std::optional<TimePoint>& give_up_from) {
  if (!give_up_from || opts_.flush_timeout_ms == 0) {
    upload_cv_.wait(lock);
    return true;
  }
  const TimePoint until = give_up_at_locked(*give_up_from);
  if (std::chrono::steady_clock::now() >= until) return false;
  upload_cv_.wait_until(lock, until);
  return true;  // the caller looks again; the next call says whether time is up
}

bool FlushPipeline::try_lock_uploads(TimePoint since) NO_THREAD_SAFETY_ANALYSIS {
  flush_claims_.fetch_add(1);
  bool held = false;
  for (;;) {
    TimePoint until;
    {
      MutexLock lock(&layers_.mu());
      until = give_up_at_locked(since);
    }
    if (until == TimePoint::max()) {
      upload_mu_.lock();
      held = true;
      break;
    }
    if (upload_mu_.try_lock_until(until)) {
      held = true;
      break;
    }
    // A commit meanwhile moves the moment on: storage is answering.
    MutexLock lock(&layers_.mu());
    if (std::chrono::steady_clock::now() >= give_up_at_locked(since)) break;
  }
  flush_claims_.fetch_sub(1);
  return held;
}

void FlushPipeline::note_storage_failure_locked(const Status& failed) {
  flush_errors_++;
  if (failing_since_unix_ms_ == 0 && !failed.is(Status::Code::kFenced)) {  // fencing is no outage
    failing_since_unix_ms_ = now_unix_ms();
    log::get("engine")->warn("storage is failing, writes stay buffered dirty_bytes={} write_buffer_bytes={}",
                             active_bytes_ + sealing_bytes_, opts_.write_buffer_bytes);
  }
  last_storage_error_ = failed.ToString();
}

// The claim lasts while the lock waits: the flusher, which takes upload_mu_
// without one, steps aside for it between its rounds.
void FlushPipeline::UploadLock::lock() NO_THREAD_SAFETY_ANALYSIS {
  p_.flush_claims_.fetch_add(1);
  p_.upload_mu_.lock();
  p_.flush_claims_.fetch_sub(1);
  held_ = true;
}

void FlushPipeline::UploadLock::unlock() NO_THREAD_SAFETY_ANALYSIS {
  held_ = false;
  p_.upload_mu_.unlock();
}

// Starts a PUT for each SEALED buffer in the window (U1) up to sequence
// `through`; true when it started any (the engine mutex was let go meanwhile).
// (The analysis cannot follow `lock` let go and taken back through a
// reference; it is held again on every return.)
bool FlushPipeline::start_window_puts_locked(MutexLock& lock, uint64_t through) NO_THREAD_SAFETY_ANALYSIS {
  std::vector<std::shared_ptr<Sealed>> start;
  for (size_t i = 0; i < sealing_.size() && i < upload_window_ && sealing_[i]->seq <= through; ++i) {
    if (sealing_[i]->stage == Stage::kSealed) {
      transition(*sealing_[i], Stage::kPutting);
      ++puts_running_;
      start.push_back(sealing_[i]);
    }
  }
  if (start.empty()) return false;
  lock.unlock();  // with a window of 1 the PUT runs inline, in submit()
  for (auto& sealed : start) {
    upload_pool_->submit([this, sealed = std::move(sealed)] {
      Status st = put_segment(*sealed);
      MutexLock done(&layers_.mu());
      if (st.ok()) sealed->stored_tick = ++puts_stored_;
      transition(*sealed, st.ok() ? Stage::kStored : Stage::kFailed);
      sealed->put_error = std::move(st);
      --puts_running_;
      upload_cv_.notify_all();
    });
  }
  lock.lock();
  return true;
}

// The driver of the state machine (rules U1-U4): keeps the window's PUTs
// running and commits the head of sealing_ whenever it is STORED, until
// everything up to last_seq is committed or the head failed.
Status FlushPipeline::upload_through(uint64_t last_seq, bool fill_window, std::optional<TimePoint> give_up_from) {
  Status failed;
  std::shared_ptr<Sealed> failed_buffer;
  bool stop_past_round = false;  // a commit past the round failed: leave the rest to the next round
  bool out_of_time = false;      // U8: PUTs that still run are left to their workers
  // The error for a PUT storage has not answered by the deadline.
  auto no_answer = [this](const Sealed& sealed) {
    return Status::Unavailable("upload " + segment_key(sealed.seq) + ": storage has not answered for " +
                               std::to_string(opts_.flush_timeout_ms) + " ms (lsm.flush_timeout_ms)");
  };
  MutexLock lock(&layers_.mu());
  // A buffer that failed in an earlier call gets a new attempt in this one
  // (only buffers in the window can have failed).
  for (const auto& sealed : sealing_) {
    if (sealed->stage == Stage::kFailed) transition(*sealed, Stage::kSealed);
  }
  // Past the round, the window keeps filling with the buffers sealed by the
  // time the round went past (fill_through), so that the PUTs it waits for
  // do not leave the window empty behind them; later ones wait for the next
  // round, which keeps a round finite under sustained writes.
  std::optional<uint64_t> fill_through;
  for (;;) {
    if (sealing_.empty()) break;
    const bool in_round = sealing_.front()->seq <= last_seq;
    if (!in_round) {
      // Past the round. Its PUTs still running are waited for (U4), and a
      // head they leave STORED is committed meanwhile, in order, as below,
      // rather than held for the next round: a commit never waits for a
      // later segment's PUT.
      if (puts_running_ == 0 || stop_past_round) break;
      if (!fill_through) fill_through = sealing_.back()->seq;
      if (fill_window && start_window_puts_locked(lock, *fill_through)) continue;
      if (sealing_.front()->stage != Stage::kStored) {
        if (!wait_for_uploads_locked(lock, give_up_from)) {
          out_of_time = true;  // this round's buffers are committed: that is what was asked
          break;
        }
        continue;
      }
    }
    // In the round, start a PUT for every buffer in the window that needs
    // one: with fill_window any, else those of the round.
    if (in_round && start_window_puts_locked(lock, fill_window ? UINT64_MAX : last_seq)) {
      continue;  // the head may have finished meanwhile
    }
    const std::shared_ptr<Sealed> head = sealing_.front();
    if (head->stage == Stage::kPutting) {
      // A PUT finished, or a buffer was sealed into the window.
      if (!wait_for_uploads_locked(lock, give_up_from)) {
        out_of_time = true;
        failed = no_answer(*head);
        failed_buffer = head;
        break;
      }
      continue;
    }
    if (head->stage == Stage::kFailed) {
      failed = head->put_error;
      failed_buffer = head;
      break;
    }
    // U7: STORED, but committed (and so acknowledged) only once a lease
    // check that began after its PUT completed still finds the lease ours.
    if (opts_.lease && head->stored_tick > confirmed_tick_) {
      const uint64_t covers = puts_stored_;  // every PUT completed by now
      lock.unlock();
      Status confirmed = confirm_writer("confirm " + segment_key(head->seq) + " before committing it");
      lock.lock();
      if (!confirmed.ok() && !in_round) {
        stop_past_round = true;  // not this round's to report: the next one retries it
        continue;
      }
      if (!confirmed.ok()) {
        failed = std::move(confirmed);
        failed_buffer = head;
        break;
      }
      confirmed_tick_ = std::max(confirmed_tick_, covers);
      continue;  // the head is still STORED: nothing else commits it (upload_mu_)
    }
    lock.unlock();
    Status st = commit_segment(head);  // pops the head
    lock.lock();
    if (!st.ok() && !in_round) {
      stop_past_round = true;
      continue;
    }
    if (!st.ok()) {
      failed = std::move(st);
      failed_buffer = head;
      break;
    }
  }
  // U4: let the PUTs still running finish; those that succeed stay STORED.
  // U8: but not past the deadline.
  while (!out_of_time && puts_running_ != 0) {
    if (!wait_for_uploads_locked(lock, give_up_from)) {
      out_of_time = true;
      if (failed.ok() && !sealing_.empty() && sealing_.front()->seq <= last_seq) {
        failed = no_answer(*sealing_.front());
        failed_buffer = sealing_.front();
      }
    }
  }
  if (failed.ok()) return failed;

  note_storage_failure_locked(failed);
  lock.unlock();
  log::get("engine")->error("flush failed, data stays buffered for retry seq={} error={}", failed_buffer->seq,
                            log::quote(failed.ToString()));
  return failed;
}

Result<uint64_t> FlushPipeline::quiet_seqs(uint64_t count, const std::function<void()>& while_quiet) {
  // Under sustained writes a full buffer would seal while the last one
  // uploads, and sealing_ would seldom be empty. Writers keep writing into the
  // active buffer (within the dirty limit, as always) but do not seal it
  // meanwhile, so the buffers already sealed drain within one upload round.
  // A buffer that filled up meanwhile seals on release, after the sequence
  // numbers taken here.
  auto hold_seals = [this](bool on) {
    MutexLock lock(&layers_.mu());
    seals_held_ = on;
    seal_if_full_locked();
  };
  hold_seals(true);
  Result<uint64_t> out = Status::Busy("writers keep sealing buffers; try again");
  for (int attempt = 0; attempt < 100; ++attempt) {
    {
      MutexLock lock(&layers_.mu());
      if (sealing_.empty()) {
        out = take_seqs_locked(count);
        if (while_quiet) while_quiet();
        break;
      }
    }
    if (Status st = upload_sealed(); !st.ok()) {
      out = st;
      break;
    }
  }
  hold_seals(false);
  return out;
}

bool FlushPipeline::covered_locked(uint64_t wanted) {
  MutexLock lock(&layers_.mu());
  return committed_gen_ >= wanted && !roots_dirty_;
}

Status FlushPipeline::make_durable(BlockDevice::FlushTicket ticket) {
  using namespace std::chrono;
  uint64_t wanted = ticket;
  if (ticket == BlockDevice::kFlushEverything) {
    MutexLock lock(&layers_.mu());
    wanted = covering_gen_locked();
  }
  flushes_++;
  const auto started = steady_clock::now();
  const milliseconds timeout(opts_.flush_timeout_ms);
  // U8: every wait below ends once storage has accepted no upload for
  // `timeout` since this call began (none with a timeout of 0).
  const std::optional<TimePoint> give_up_from = timeout.count() > 0 ? std::optional<TimePoint>(started) : std::nullopt;
  // Storage answered nothing by the deadline: EIO now, the data stays buffered.
  auto out_of_time = [&](const Status& last) {
    MutexLock lock(&layers_.mu());
    const auto stalled = stalled_for_locked(started);
    Status st = Status::Unavailable(
        "storage accepted no upload for " + std::to_string(stalled.count()) + " ms (lsm.flush_timeout_ms): " +
        (last.ok() ? std::string("an upload in flight has had no answer") : last.message()));
    note_storage_failure_locked(st);
    return st;
  };
  milliseconds backoff(100);
  bool first = true;
  uint64_t target = 0;
  Status last;  // the last upload error, for the message
  for (;;) {
    if (give_up_from) {
      if (!try_lock_uploads(started)) return out_of_time(last);
    } else {
      flush_claims_.fetch_add(1);  // the flusher steps aside between its rounds, as for UploadLock
      upload_mu_.lock();
      flush_claims_.fetch_sub(1);
    }
    // Whoever held the upload lock meanwhile may have committed everything
    // this call covers (group commit). roots_dirty_ needs an upload anyway.
    if (covered_locked(wanted)) {
      if (first) flushes_grouped_++;
      upload_mu_.unlock();
      return Status::OK();
    }
    if (first) {
      MutexLock lock(&layers_.mu());
      // Everything buffered, not only what this call covers: the callers
      // queued behind this one are covered by this upload too.
      seal_active_locked();
      target = next_seq_ - 1;
      first = false;
    }
    Status st = upload_through(target, /*fill_window=*/false, give_up_from);
    // A root change whose record did not reach storage: a flush that returns
    // OK must leave storage able to rebuild what it acknowledges.
    if (st.ok() && roots_dirty_) st = write_roots_().With("record snapshots in storage");
    // Wait out the outage without holding upload_mu_, so the flusher, status
    // and snapshot commands still run; storage gets `timeout` to accept any
    // upload at all.
    upload_mu_.unlock();
    if (st.ok()) return st;
    if (timeout.count() == 0 || !st.retryable()) return st;
    last = st;
    {
      MutexLock lock(&layers_.mu());
      const milliseconds stalled = stalled_for_locked(started);
      if (stalled >= timeout) {
        return Status(st.code(), "storage accepted no upload for " + std::to_string(stalled.count()) +
                                     " ms (lsm.flush_timeout_ms): " + st.message());
      }
      if (!closed_) retry_cv_.wait_for(lock, std::min(backoff, timeout - stalled));
      if (closed_) return Status::Cancelled("volume closed while a flush waited for storage");
    }
    backoff = std::min<milliseconds>(backoff * 2, max_retry_backoff(opts_.flush_timeout_ms));
  }
}

void FlushPipeline::flusher_loop() {
  using namespace std::chrono;
  const auto interval = opts_.flush_interval_ms > 0 ? milliseconds(opts_.flush_interval_ms) : hours(24 * 365);
  auto next_timer = steady_clock::now() + interval;
  auto backoff = milliseconds(100);
  for (;;) {
    {
      MutexLock lock(&layers_.mu());
      while (!closing_ && sealing_.empty() && steady_clock::now() < next_timer) {
        flusher_cv_.wait_until(lock, next_timer);
      }
      if (closing_) return;
      if (steady_clock::now() >= next_timer) {
        seal_active_locked();  // the timer flush
        next_timer = steady_clock::now() + interval;
      }
      if (sealing_.empty()) continue;
    }
    // Let a FLUSH, GC pass or snapshot waiting for upload_mu_ go first.
    while (flush_claims_.load() > 0) std::this_thread::sleep_for(milliseconds(1));
    Status st;
    upload_mu_.lock();
    // U8: a round that storage does not answer ends, so that storage counts
    // as failing and FLUSHes get the lock between tries.
    st = upload_sealed(steady_clock::now());
    if (st.ok() && roots_dirty_) st = write_roots_();
    upload_mu_.unlock();
    if (!st.ok()) {
      // Storage trouble: wait before the next try, growing to at most 5 s
      // (see max_retry_backoff).
      MutexLock lock(&layers_.mu());
      if (!closing_) flusher_cv_.wait_for(lock, backoff);
      backoff = std::min<milliseconds>(backoff * 2, max_retry_backoff(opts_.flush_timeout_ms));
    } else {
      backoff = milliseconds(100);
    }
  }
}

bool FlushPipeline::closed() {
  MutexLock lock(&layers_.mu());
  return closed_;
}

Status FlushPipeline::close(uint64_t* dirty_bytes_at_close) {
  {
    MutexLock lock(&layers_.mu());
    closing_ = true;
    *dirty_bytes_at_close = active_bytes_ + sealing_bytes_;
  }
  flusher_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  Status st = make_durable();
  {
    MutexLock lock(&layers_.mu());
    closed_ = true;
  }
  space_cv_.notify_all();
  retry_cv_.notify_all();
  return st;
}

FlushStats FlushPipeline::stats() {
  FlushStats s;
  {
    MutexLock lock(&layers_.mu());
    s.dirty_bytes = active_bytes_ + sealing_bytes_;
    s.next_seq = next_seq_;
    s.storage_failing_since_unix_ms = failing_since_unix_ms_;
    s.last_storage_error = last_storage_error_;
  }
  s.segments_written = segments_written_;
  s.bytes_uploaded = bytes_uploaded_;
  s.flushes = flushes_;
  s.flushes_grouped = flushes_grouped_;
  s.flush_errors = flush_errors_;
  return s;
}

}  // namespace portalbd
