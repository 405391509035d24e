// FlushPipeline: the write path from the active buffer to committed
// segments. It owns the write buffers, seal generations, sequence numbers,
// the upload window and its workers, the upload lock, group commit
// (make_durable) and the background flusher.
//
//   write  -> active buffer (memory)                     answered at once
//   seal   -> the active buffer becomes a sealed buffer with the next sequence
//             number (when it reaches segment_bytes, on FLUSH/FUA, on the
//             flush_interval_ms timer, at shutdown)
//   upload -> a sealed buffer is encoded as one segment object and PUT
//   commit -> the segment's entries are applied to the SQLite index in one
//             transaction, then to its layer's map, and the sealed buffer is
//             dropped
//
// The state machine per sealed buffer (transitions in flush_pipeline.cc, all
// driven by upload_through() under the upload lock, upload_mu_):
//
//   ACTIVE --seal_active_locked()--> SEALED --PUT started--> PUTTING
//   PUTTING --put_segment() OK--> STORED --lease confirmed, commit_segment()--> COMMITTED
//   PUTTING --put_segment() fails--> FAILED --next upload_through()--> SEALED
//
//   SEALED:    in sealing_ with its bytes and sequence number; readable.
//   PUTTING:   a pool worker encodes it (first attempt only) and PUTs it.
//   STORED:    the object is in storage but not in the index or the maps.
//   COMMITTED: its entries are in the index (one transaction) and in its
//              layer's map, and it is dropped from sealing_ in the same
//              critical section (the engine mutex), so no reader sees neither.
//
// Upload rules (W = upload_concurrency, at most kMaxUploadWindow):
//   U1. Only the first W buffers of sealing_ (the upload window) are ever
//       PUTTING, and at most W PUTs run at once (a pool of W threads, one for
//       W = 1: never the caller's, U8). So storage never holds an
//       uncommitted segment more than W-1 segments past the oldest
//       uncommitted one, which is what replay_storage() relies on.
//   U2. Commits follow sequence order: only the head of sealing_ commits,
//       and only once STORED. A FAILED head ends upload_through() with its
//       error; it and everything after it stay buffered. Buffers already
//       STORED stay STORED and are committed later without a second PUT.
//   U3. A failed PUT keeps its encoded object, and the retry PUTs identical
//       bytes (idempotent). A successful PUT frees it.
//   U4. upload_through() returns only when none of its PUTs runs, so a
//       buffer's object/footer are only ever touched by one thread at a time,
//       and nothing uploads while upload_mu_ is free -- except past a
//       deadline (U8). While it waits for
//       PUTs past the buffers it was asked for, it commits the heads they
//       leave STORED (in order, U2, U7): a commit never waits for a later
//       segment's PUT; and it keeps the window full with the buffers sealed
//       by the time it went past them (no later ones, so it ends).
//   U5. Memory: sealed buffers are bounded by write_buffer_bytes (writers
//       wait for space); encoded objects exist only inside the window, so at
//       most W of them (each about segment_bytes) are held on top.
//   U6. The writer lease is checked before every segment PUT.
//   U7. A STORED buffer commits only after a lease check that began after
//       its PUT completed (one GET covers every buffer STORED before it
//       began). Since a FLUSH is answered only once its buffers commit, no
//       FLUSH is answered OK whose segments the next holder might not see
//       (WriterLease L6); a fenced check leaves them STORED and the FLUSH
//       fails (kFenced, EIO). Where the store enforces conditional puts,
//       segments are created with put_if_absent (store_segment), so two
//       writers never replace each other's segment under one key.
//   U8. Deadlines hold whatever the store does (a hung store answers
//       nothing, never). A FLUSH and the flusher's rounds give up once
//       storage has accepted no upload for flush_timeout_ms (counted from
//       the later of their start and the last commit): waiting for the
//       upload lock (try_lock_uploads) and waiting for a PUT both end then,
//       with kUnavailable, and storage counts as failing (status). A PUT
//       still running is left PUTTING on its worker, never on the caller's
//       thread (the pool always has a thread), and only its worker touches
//       the buffer until it ends: the next upload_through() waits for it (or
//       gives up again), and the buffer goes on to STORED or FAILED as
//       always. Whoever needs no PUT running (quiet_seqs: checkpoints, GC,
//       root changes) waits for an empty sealing_, which a PUTTING buffer
//       is not.

//
// Locks: upload_mu_ (the upload lock, a TimedMutex so a FLUSH can give up
// waiting for it, U8) serializes uploads and whatever must
// not run beside one (root changes, GC steps, checkpoints: they take it with
// lock_uploads()); held across I/O. The engine mutex (LayerSet::mu()) guards
// the buffers below and is never held across I/O. Upload workers take only
// the engine mutex (U4). Order: upload_mu_ -> engine mutex.
//
// Debug builds check every stage transition against the state machine above
// (check_transition), as SQLite's pager asserts its state.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "meta/index.h"
#include "src/engine/block_device.h"
#include "src/engine/layer_set.h"
#include "src/engine/volume_options.h"
#include "src/store/object_store.h"
#include "src/util/mutex.h"
#include "src/util/task_pool.h"

namespace portalbd {

// What the pipeline counts, for VolumeStats.
struct FlushStats {
  uint64_t dirty_bytes = 0;
  uint64_t next_seq = 0;
  uint64_t segments_written = 0, bytes_uploaded = 0;
  uint64_t flushes = 0, flushes_grouped = 0, flush_errors = 0;
  int64_t storage_failing_since_unix_ms = 0;
  std::string last_storage_error;
};

class FlushPipeline {
 public:
  FlushPipeline(std::shared_ptr<ObjectStore> store, LayerSet& layers, const VolumeOptions& opts);
  ~FlushPipeline();  // stops the flusher; see close() for a clean stop

  // Open: sequence numbering continues after `next_seq - 1`; the next write
  // segment names `last_write_seq` as its predecessor; write sequence numbers
  // continue after `max_wseq` (the newest storage holds).
  void set_sequence_locked(uint64_t next_seq, uint64_t last_write_seq, uint64_t max_wseq) REQUIRES(layers_.mu());
  // Who stores this volume's segments (SegmentFooter::writer): a random id
  // per daemon start, or the journal's. Set before anything is stored.
  void set_writer(uint64_t writer) { writer_ = writer; }
  uint64_t writer() const { return writer_; }
  // Starts the background flusher, committing to `index` from now on.
  void start(meta::Index* index);

  // ---- the write buffer (engine mutex held by the caller where _locked)
  // Stores whole blocks into the active buffer, waiting while the buffers
  // are full and uploads pending (back-pressure, flush_timeout_ms). Each
  // call is one write: it takes the next write sequence number (*wseq, when
  // asked), in the order the writes apply to the buffer.
  Status buffer(uint64_t lba, uint64_t nblocks, BlockSource src, uint64_t charged_bytes, uint64_t* wseq = nullptr)
      EXCLUDES(layers_.mu());
  // Waits for buffer space as buffer() does, then returns with the engine
  // mutex held through `lock` (ephemeral volumes write into their layer).
  Status wait_for_space(MutexLock& lock, uint64_t charged_bytes) REQUIRES(layers_.mu());
  // Open: a write recovered from the journal, with the write sequence number
  // it had, into the active buffer (no waiting: the flusher is not running
  // yet). wseq must be above every one taken so far.
  void replay_locked(uint64_t lba, uint64_t nblocks, BlockSource src, uint64_t charged_bytes, uint64_t wseq)
      REQUIRES(layers_.mu());
  // Open: write sequence numbers continue after `upto` (the journal's
  // newest, which storage may not have seen).
  void skip_wseqs_locked(uint64_t upto) REQUIRES(layers_.mu()) { last_wseq_ = std::max(last_wseq_, upto); }
  // Seals what is buffered and wakes the flusher: upload now rather than at
  // the next timer tick (unless a quiet moment is being awaited).
  void nudge() EXCLUDES(layers_.mu());
  // The newest write sequence number taken.
  uint64_t last_wseq_locked() const REQUIRES(layers_.mu()) { return last_wseq_; }
  // Called (no lock held) after each commit with the newest write sequence
  // number committed: every write up to it is in storage.
  void set_on_commit(std::function<void(uint64_t committed_wseq)> fn) { on_commit_ = std::move(fn); }
  // OK, or why writes are refused (closed, fenced).
  Status writable_locked() const REQUIRES(layers_.mu());
  // Overlays the buffered blocks of [lba, lba+nblocks) that belong to
  // `chain` onto *view: sealed buffers of its layers, then (for the live
  // view) the active buffer.
  void overlay_buffers_locked(const std::vector<const Layer*>& chain, bool live, uint64_t lba, uint64_t nblocks,
                              ExtentMap<BlockSource>* view) const REQUIRES(layers_.mu());
  // Whether sealed buffers of `layer` wait to be committed to its map.
  bool has_uncommitted_locked(const Layer& layer) const REQUIRES(layers_.mu());
  // ACTIVE -> SEALED. Cheap: moves the map, no copying of data.
  void seal_active_locked() REQUIRES(layers_.mu());
  // Takes `count` sequence numbers (roots records, claims); returns the first.
  uint64_t take_seqs_locked(uint64_t count) REQUIRES(layers_.mu());
  uint64_t next_seq_locked() const REQUIRES(layers_.mu()) { return next_seq_; }
  // The seal generation that will hold every write answered so far: the
  // active buffer's (the next seal), or the newest sealed one when the
  // active buffer is empty.
  uint64_t covering_gen_locked() const REQUIRES(layers_.mu());
  uint64_t dirty_bytes_locked() const REQUIRES(layers_.mu()) { return active_bytes_ + sealing_bytes_; }

  // ---- uploads
  // The upload lock, held for a scope by anyone but the flusher. While it
  // waits and while it holds, it counts as a claim (flush_claims_), so the
  // flusher steps aside between its rounds. unlock()/lock() drop and retake
  // it inside the scope (GC lets it go between steps).
  class SCOPED_CAPABILITY UploadLock {
   public:
    explicit UploadLock(FlushPipeline& p) ACQUIRE(p.upload_mu_) : p_(p) { lock(); }
    ~UploadLock() RELEASE() {
      if (held_) unlock();
    }
    UploadLock(const UploadLock&) = delete;
    UploadLock& operator=(const UploadLock&) = delete;
    void lock() ACQUIRE();
    void unlock() RELEASE();

   private:
    FlushPipeline& p_;
    bool held_ = false;
  };
  TimedMutex& upload_mu() RETURN_CAPABILITY(upload_mu_) { return upload_mu_; }
  using TimePoint = std::chrono::steady_clock::time_point;
  // Commits every sealed buffer up to last_seq, PUTting up to
  // upload_window_ at once; on failure returns the error of the oldest
  // uncommitted one. With fill_window it also starts PUTs of buffers past
  // last_seq while the window has room (and waits for them, U4, without
  // committing them). With `give_up_from` (and flush_timeout_ms > 0) it
  // returns kUnavailable once storage has accepted no upload for
  // flush_timeout_ms since then, leaving PUTs that hang running (U8).
  Status upload_through(uint64_t last_seq, bool fill_window = false,
                        std::optional<TimePoint> give_up_from = std::nullopt) REQUIRES(upload_mu_);
  // upload_through() the newest buffer sealed at the call, keeping the window
  // full: a bounded round, however fast writers seal.
  Status upload_sealed(std::optional<TimePoint> give_up_from = std::nullopt) REQUIRES(upload_mu_);
  // Allocates `count` sequence numbers at a moment when no sealed buffer is
  // pending, so every lower sequence is committed, and runs `while_quiet`
  // (engine mutex held) at that moment. Holds back size-triggered seals
  // while it waits, so sustained writes cannot keep that moment from coming.
  Result<uint64_t> quiet_seqs(uint64_t count, const std::function<void()>& while_quiet) REQUIRES(upload_mu_);
  // flush() proper: returns once every write answered before the call (or,
  // with a ticket, before the ticket was taken) is committed and the roots
  // record stored, waiting out storage outages up to flush_timeout_ms, and
  // no longer than that for a store that does not answer (U8). Group
  // commit: whoever holds the upload lock seals and uploads everything
  // buffered, so callers that queued behind it often find their writes
  // committed and return without an upload of their own.
  Status make_durable(BlockDevice::FlushTicket ticket = BlockDevice::kFlushEverything) EXCLUDES(upload_mu_);
  // Stores a new segment object under `key` after a lease check (U6): with
  // put_if_absent where the store enforces it (U7), where finding the key
  // taken by anything but these very bytes (an earlier attempt of ours)
  // fences the lease. Any thread.
  Status store_segment(const std::string& key, const std::shared_ptr<const std::vector<std::byte>>& object);
  // The lease check after PUTs and before what they make visible (U7): OK
  // without a lease. Any thread.
  Status confirm_writer(const std::string& what);

  // Called on the upload's worker with each segment object storage accepted
  // and its frames, before the buffer is committed: the volume keeps the
  // frames in its disk cache (issue 21), so data read soon after it was
  // written costs no GET. It must return soon (the commit waits for it);
  // holding on to `object` is allowed. Set before start(); optional.
  using StoredHook = std::function<void(uint64_t seq, const std::shared_ptr<const std::vector<std::byte>>& object,
                                        const std::vector<FrameRef>& frames)>;
  void set_stored_hook(StoredHook hook) { stored_hook_ = std::move(hook); }

  // ---- the roots record (kept by Volume, settled by flushes)
  // The index's roots changed but storage's roots record does not say so
  // yet: the next flush calls the writer set here before it answers.
  void set_roots_writer(std::function<Status()> write_roots) { write_roots_ = std::move(write_roots); }
  void set_roots_dirty_locked(bool dirty) REQUIRES(upload_mu_) { roots_dirty_ = dirty; }
  bool roots_dirty_locked() const REQUIRES(upload_mu_) { return roots_dirty_; }
  void mark_roots_dirty() EXCLUDES(upload_mu_) {
    UploadLock lock(*this);
    roots_dirty_ = true;
  }

  // ---- life cycle
  // Stops the flusher and seals and uploads everything buffered; writes are
  // refused from then on. Returns the final upload's status.
  Status close(uint64_t* dirty_bytes_at_close) EXCLUDES(upload_mu_);
  bool closed() EXCLUDES(layers_.mu());
  uint64_t segments_written() const { return segments_written_.load(); }
  void count_flush() { flushes_++; }
  FlushStats stats();

 private:
  struct Sealed {
    enum class Stage : uint8_t { kSealed, kPutting, kStored, kFailed };  // see the state machine above

    uint64_t seq = 0;
    uint64_t gen = 0;              // which seal made it: 1, 2, ... (seal_gen_); never reused
    uint64_t after_seq = 0;        // the buffer sealed before it, if uncommitted then (SegmentFooter)
    uint64_t prev_seq = 0;         // the write segment sealed before it, committed or not (SegmentFooter)
    uint64_t max_wseq = 0;         // the newest write it holds (SegmentFooter::max_wseq)
    std::shared_ptr<Layer> layer;  // where its extents go once committed
    ExtentMap<BlockSource> blocks;
    uint64_t bytes = 0;            // buffered bytes held
    Stage stage = Stage::kSealed;  // guarded by the engine mutex
    Status put_error;              // why the last PUT failed (kFailed); guarded by the engine mutex
    // Written by the PUT's worker while kPutting, read by upload_through()
    // after it saw the stage change under the engine mutex (U4). The object
    // is built on the first attempt and kept for retries until a PUT
    // succeeds (U3); shared with stores that keep objects in memory.
    std::shared_ptr<std::vector<std::byte>> object;
    uint64_t object_bytes = 0;
    std::optional<SegmentFooter> footer;
    uint64_t stored_tick = 0;  // puts_stored_ when its PUT succeeded (U7); guarded by the engine mutex
  };
  using Stage = Sealed::Stage;

  // Moves `sealed` to `to`, asserting in debug builds that the state
  // machine allows it.
  static void transition(Sealed& sealed, Stage to);
  // The size trigger: a full active buffer seals (unless seals are held, see
  // quiet_seqs) and the flusher uploads it.
  void seal_if_full_locked() REQUIRES(layers_.mu());
  // Encodes (first attempt) and PUTs one buffer. Runs on an upload worker
  // without any lock held.
  Status put_segment(Sealed& sealed);
  // STORED -> COMMITTED for the head of sealing_.
  Status commit_segment(const std::shared_ptr<Sealed>& sealed) REQUIRES(upload_mu_);
  // How long storage has accepted no upload, counted from no earlier than
  // `since`.
  std::chrono::milliseconds stalled_for_locked(std::chrono::steady_clock::time_point since) const
      REQUIRES(layers_.mu());
  // When a wait that began at `since` gives up (U8): flush_timeout_ms after
  // the later of `since` and the last commit; never with flush_timeout_ms 0.
  TimePoint give_up_at_locked(TimePoint since) const REQUIRES(layers_.mu());
  // Waits for upload_cv_, until give_up_at_locked(*give_up_from) if given.
  // False once that moment has passed (checked before waiting).
  bool wait_for_uploads_locked(MutexLock& lock, const std::optional<TimePoint>& give_up_from) REQUIRES(layers_.mu());
  // Takes the upload lock as UploadLock does (a claim while waiting), but
  // gives up at give_up_at_locked(since): false, and the lock is not held.
  bool start_window_puts_locked(MutexLock& lock, uint64_t through) REQUIRES(layers_.mu());
  bool try_lock_uploads(TimePoint since) TRY_ACQUIRE(true, upload_mu_) EXCLUDES(layers_.mu());
  // An upload failed or storage did not answer: counts it, and marks storage
  // failing (status, the log) unless fenced, which is no outage.
  void note_storage_failure_locked(const Status& failed) REQUIRES(layers_.mu());
  // Writers may add charged_bytes to the buffers (back-pressure).
  bool has_space_locked(uint64_t charged_bytes) const REQUIRES(layers_.mu());
  // Every seal generation up to `wanted` is committed and the roots record
  // is stored: a flush owed `wanted` has nothing left to do.
  bool covered_locked(uint64_t wanted) REQUIRES(upload_mu_) EXCLUDES(layers_.mu());
  void flusher_loop();

  const std::shared_ptr<ObjectStore> store_;
  LayerSet& layers_;
  const VolumeOptions& opts_;
  meta::Index* index_ = nullptr;  // set by start()
  std::function<Status()> write_roots_;
  StoredHook stored_hook_;
  std::function<void(uint64_t)> on_commit_;

  TimedMutex upload_mu_;
  // Callers of upload_mu_ other than the flusher, waiting or holding
  // (lock_uploads). Under sustained writes the flusher always has more to
  // upload and would take the mutex back before any of them woke; it steps
  // aside for them between its rounds instead (they upload too).
  std::atomic<int> flush_claims_{0};
  // The index's roots changed but storage's roots record does not say so
  // yet (its PUT failed): the next flush writes it.
  bool roots_dirty_ GUARDED_BY(upload_mu_) = false;
  // Every PUT counted in puts_stored_ up to this was followed by a lease
  // check that passed (U7).
  uint64_t confirmed_tick_ GUARDED_BY(upload_mu_) = 0;

  CondVar space_cv_;    // writers waiting for buffer space
  CondVar flusher_cv_;  // wakes the flusher
  CondVar retry_cv_;    // a flush waiting out a storage outage
  CondVar upload_cv_;   // a PUT finished or a buffer was sealed
  uint32_t puts_running_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t puts_stored_ GUARDED_BY(layers_.mu()) = 0;  // segment PUTs that succeeded (U7)
  // The last successful upload (or open()), and the current failing streak.
  std::chrono::steady_clock::time_point last_upload_ok_ GUARDED_BY(layers_.mu()) = std::chrono::steady_clock::now();
  int64_t failing_since_unix_ms_ GUARDED_BY(layers_.mu()) = 0;
  std::string last_storage_error_ GUARDED_BY(layers_.mu());
  ExtentMap<BlockSource> active_ GUARDED_BY(layers_.mu());
  uint64_t active_bytes_ GUARDED_BY(layers_.mu()) = 0;
  // quiet_seqs() waits for sealing_ to drain: writers keep filling the
  // active buffer but do not seal it meanwhile.
  bool seals_held_ GUARDED_BY(layers_.mu()) = false;
  std::deque<std::shared_ptr<Sealed>> sealing_ GUARDED_BY(layers_.mu());  // oldest first
  // Seal generations: the newest buffer sealed, and the newest committed.
  // Buffers commit in the order they were sealed, so every generation up to
  // committed_gen_ is durable. Unlike sequence numbers, which GC rewrites
  // and snapshots take too, generations count only write buffers: a FLUSH
  // knows from them whether someone else's upload already covered it.
  uint64_t seal_gen_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t committed_gen_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t sealing_bytes_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t next_seq_ GUARDED_BY(layers_.mu()) = 1;
  // Write sequence numbers: one per write, in the order writes apply to the
  // active buffer. The newest taken, the newest in the active buffer (0:
  // none), and the newest committed to the index.
  uint64_t last_wseq_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t active_max_wseq_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t committed_wseq_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t writer_ = 0;  // set before start()
  // The newest write segment sealed (or, at open, the newest in storage): the
  // next one names it as its predecessor.
  uint64_t last_write_seq_ GUARDED_BY(layers_.mu()) = 0;
  bool closing_ GUARDED_BY(layers_.mu()) = false;
  bool closed_ GUARDED_BY(layers_.mu()) = false;

  // The memory of the last object stored, kept for the next segment to be
  // encoded into while more sealed buffers wait (put_segment): a fresh 64 MiB
  // buffer per segment was a tenth of the uploading thread's time in the
  // kernel zeroing new pages, and fresh pages are slow on a VM. Empty when
  // nothing waits, so an idle volume holds no encoded object (U5: on top of
  // the W objects in the window, at most this one, only while buffers queue).
  std::vector<std::byte> spare_object_ GUARDED_BY(layers_.mu());
  std::atomic<uint64_t> segments_written_{0}, bytes_uploaded_{0}, flushes_{0}, flushes_grouped_{0}, flush_errors_{0};
  const uint32_t upload_window_;  // opts_.upload_concurrency, clamped (U1)
  // Runs the PUTs: upload_window_ threads, at least one, so that a PUT that
  // hangs never holds the caller's thread (U8).
  // Declared after everything its jobs touch, so it is destroyed first.
  std::unique_ptr<TaskPool> upload_pool_;
  std::thread flusher_;
};

}  // namespace portalbd
