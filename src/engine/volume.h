// Volume: the live, writable block device of one portalbd volume — the
// log-structured engine behind the NBD export — and the orchestration of
// its parts. The map of the engine:
//
//   LayerSet (layer_set.h)         the layers in memory (live root, snapshots,
//                                  layers readers hold) and the engine mutex
//   FlushPipeline (flush_pipeline.h)  write buffers -> segments -> index: seals,
//                                  the upload window, group commit, the flusher
//   GarbageCollector (gc.h)        one GC pass, one method per step
//   Checkpointer (checkpoint.h)    index checkpoints in storage, and restoring one
//   LeaseKeeper (lease_keeper.h)   renews the writer lease on its own timer
//   SnapshotReader (snapshot_reader.h)  one snapshot served read-only through
//                                  a VolumeOptions::read_only volume, beside
//                                  another process's writer
//   Volume (this file)             the BlockDevice methods, open (volume_open.cc,
//                                  volume_reconcile.cc, volume_damage.cc,
//                                  volume_takeover.cc), snapshot create/restore/
//                                  delete and the roots record (volume_snapshot.cc):
//                                  what needs the cut gate and both parts.
//
//   read   -> active buffer, then sealed buffers (newest first), then the
//             layer chain -> frame cache -> disk cache (when on) -> one ranged
//             GET per run of missing frames stored back to back (fetch_frames)
//
// Invariants
//   1. Every write answered before flush() was called is in a segment that is
//      in object storage AND committed to the index when flush() returns OK.
//      (The index commit is not fsynced — see meta/index.h — because by
//      invariant 3 a lost suffix of commits is replayed from the segments.)
//   2. The index never names a segment that was not PUT successfully first.
//   3. Segment sequence numbers grow; replaying segments newer than the
//      index's last_seq in order reproduces the index (done at open()).
//      They need not be contiguous: roots records and checkpoints take
//      numbers too. A crash with several PUTs in flight (rule U1) can leave
//      a missing or torn object among the last segments, and later ones
//      whole. None of them was committed (a FAILED or PUTTING head keeps
//      every later buffer uncommitted, U2), so no flush covering them was
//      answered: replay drops a torn one, and every segment sealed behind
//      one it does not have (SegmentFooter::after_seq), so a rebuild after a
//      crash is a prefix of the writes whatever the window.
//   4. Reads see the newest answered write for every block, whatever stage
//      of the pipeline holds it.
//
// Locking. Lock order: gate_ (close) -> gc_mu_ -> upload lock
// (FlushPipeline::upload_mu_) -> rmw_mu_ -> engine mutex (LayerSet::mu()).
// The engine mutex guards the buffers and every Layer's map and is held only
// for in-memory work, never across I/O. The upload lock serializes uploads,
// root changes, checkpoints and GC steps (held across I/O; upload workers
// never take it, U4). gc_mu_ serializes GC passes, which take the upload lock
// one step at a time. gate_ brackets every mutating request (the cut of a
// snapshot). TaskPool's own mutex is a leaf.
//
// Thread-safety: every public method is safe to call concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "meta/index.h"
#include "src/engine/block_device.h"
#include "src/engine/checkpoint.h"
#include "src/engine/cut_gate.h"
#include "src/engine/disk_frame_cache.h"
#include "src/engine/extent_map.h"
#include "src/engine/flattener.h"
#include "src/engine/flush_pipeline.h"
#include "src/engine/frame_cache.h"
#include "src/engine/frame_fetcher.h"
#include "src/engine/journal.h"
#include "src/engine/layer_set.h"
#include "src/engine/lease_keeper.h"
#include "src/engine/stream_detector.h"
#include "src/engine/volume_options.h"
#include "src/engine/writer_lease.h"
#include "src/format/codec.h"
#include "src/format/segment.h"
#include "src/store/object_store.h"
#include "src/util/mutex.h"

namespace portalbd {

struct VolumeStats {
  uint64_t size_bytes = 0;
  uint64_t dirty_bytes = 0;       // answered but not yet durable
  uint64_t segments = 0;          // segment objects in the index
  uint64_t bytes_stored = 0;      // their total size; ephemeral volumes: the bytes of the buffers holding data
  uint64_t segments_written = 0;  // by this process
  uint64_t bytes_uploaded = 0;    // by this process
  uint64_t flushes = 0;
  uint64_t overwrites_in_place = 0;  // ephemeral volumes: writes copied into their own earlier buffer
  // Of those, answered by an upload another caller made while they queued
  // for the upload lock (group commit): nothing left for them to seal.
  uint64_t flushes_grouped = 0;
  uint64_t flush_errors = 0;
  uint64_t cache_bytes = 0, cache_hits = 0, cache_misses = 0;
  // The local disk cache (VolumeOptions::disk_cache_bytes), when on.
  bool disk_cache = false;
  std::string disk_cache_dir;
  DiskFrameCacheStats disk;
  FrameFetcherStats fetch;  // fetches from storage and the disk cache, read-ahead
  uint32_t fetch_concurrency = 0;
  uint64_t read_ahead_bytes = 0;   // 0: read-ahead off
  uint64_t replayed_segments = 0;  // applied from storage at open
  uint64_t next_seq = 0;
  uint64_t bytes_live = 0;              // data bytes some root or reader reaches
  int64_t last_checkpoint_unix_ms = 0;  // 0: none yet
  uint64_t last_checkpoint_seq = 0;
  int64_t storage_failing_since_unix_ms = 0;  // 0: the last upload succeeded
  std::string last_storage_error;             // of the failing streak, if any
  // The local journal (VolumeOptions::journal_dir), when on. What losing
  // this host's disk would cost right now: dirty_bytes of writes, the oldest
  // upload_lag_ms old.
  bool journal = false;
  uint64_t journal_capacity_bytes = 0, journal_used_bytes = 0, journal_live_records = 0;
  uint64_t journal_syncs = 0, journal_fdatasyncs = 0;
  uint64_t journal_direct_writes = 0;       // writes that went to storage only (journal_direct_write_bytes)
  uint64_t journal_direct_write_bytes = 0;  // the threshold in effect (VolumeOptions)
  uint64_t upload_lag_ms = 0;
  // Index lookups: the flattened base, and what reads cost in layer maps.
  FlatBaseStats flat;
  IndexCacheStats index_cache;  // the extents in memory (the index stays on disk)
  uint64_t resolves = 0, resolve_maps = 0;
  uint64_t chain_depth = 0;  // frozen layers under the live one
};

struct GcOptions {
  int64_t grace_ms = 60000;                   // an unreferenced segment is deleted this long after GC finds it so
  double rewrite_live_ratio = 0.5;            // segments with less live data than this are rewritten
  uint64_t max_rewrite_bytes = 256ull << 20;  // per pass (throttle)
  // A pass that changed nothing still writes a checkpoint once this many
  // sequence numbers (about one per segment) were used since the last one,
  // so a rebuild from storage never replays more than about this many
  // segments. 0: only when the pass changed something.
  uint64_t checkpoint_after_seqs = 256;
};

struct GcReport {
  uint64_t layers_dropped = 0, layers_merged = 0;
  uint64_t segments_rewritten = 0, bytes_rewritten = 0;
  uint64_t buffers_compacted = 0;  // ephemeral volumes: see Volume::compact_buffers
  uint64_t segments_doomed = 0;    // newly found unreferenced (deleted after the grace period)
  uint64_t segments_deleted = 0, bytes_deleted = 0;
  uint64_t cached_frames_dropped = 0;         // the deleted segments' frames the disk cache held
  uint64_t segments_waiting = 0;              // unreferenced, still in their grace period
  int64_t next_delete_unix_ms = 0;            // when the next waiting one may go (0: none)
  uint64_t checkpoint_seq = 0;                // written by this pass (0: none needed)
  uint64_t bytes_stored = 0, bytes_live = 0;  // after the pass
};

struct SnapshotInfo {
  std::string name;
  std::string uuid;
  int64_t created_unix_ms = 0;
  uint64_t layer = 0;
  uint64_t written_bytes = 0;  // data written while it was the live layer
};

struct RestoreResult {
  std::string restored;
  std::string pre_restore;  // the snapshot that keeps the replaced state; "" with discard_current
};

// Checks a snapshot name: 1-128 of [A-Za-z0-9._-], not "live".
Status validate_snapshot_name(const std::string& name);

class Volume final : public BlockDevice, public std::enable_shared_from_this<Volume> {
 public:
  // Opens (or creates) the volume stored in `store`. Refuses a size change
  // unless it grows and opts.grow is set.
  static Result<std::shared_ptr<Volume>> Open(std::shared_ptr<ObjectStore> store, VolumeOptions opts);
  ~Volume() override;

  // Final flush and stop of the background flusher. Writes after close() fail.
  Status close();

  uint64_t size_bytes() const override { return size_bytes_; }
  bool read_only() const override { return opts_.read_only; }
  uint32_t preferred_block_size() const override { return kBlockSize; }
  Status read(uint64_t offset, std::span<std::byte> out) override;
  Status read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) override;
  Status write(uint64_t offset, std::span<const std::byte> data, bool fua) override;
  Status write_owned(uint64_t offset, std::vector<std::byte>&& data, bool fua) override;
  Status trim(uint64_t offset, uint64_t length, bool fua) override;
  Status write_zeroes(uint64_t offset, uint64_t length, bool fua) override;
  Status flush() override;
  // The ticket is the seal generation that holds the writes answered so far
  // (covering_gen_locked); see make_durable() for what it saves.
  FlushTicket flush_ticket() override;
  Status flush_through(FlushTicket ticket) override;
  bool flush_is_free() const override { return opts_.ephemeral; }
  bool flush_is_local() const override;
  bool reads_from_memory() const override { return opts_.ephemeral; }
  bool read_if_cached(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) override;
  Status block_status(uint64_t offset, uint64_t length, size_t max_extents, std::vector<StatusExtent>* out) override;
  Status prefetch(uint64_t offset, uint64_t length) override;

  // Snapshots (volume_snapshot.cc). create/restore/delete are durable when
  // they return OK; they flush as needed.
  Result<SnapshotInfo> create_snapshot(const std::string& name);
  Result<RestoreResult> restore_snapshot(const std::string& name, bool discard_current);
  Status delete_snapshot(const std::string& name);
  Result<std::vector<SnapshotInfo>> list_snapshots();
  Result<SnapshotInfo> find_snapshot(const std::string& name);
  // A read-only device showing the snapshot; it keeps the snapshot's layers
  // alive after the snapshot is deleted, until it is released.
  Result<std::shared_ptr<BlockDevice>> open_snapshot(const std::string& name);

  // Garbage collection and checkpoints (volume_gc.cc). gc() drops layers no
  // root needs, merges rootless layers into their only child, rewrites
  // sparse segments, writes a checkpoint, and deletes segments that have
  // been unreferenced for the grace period. Never deletes a segment that a
  // root or an open reader reaches.
  Result<GcReport> gc(const GcOptions& options);
  // What a GC pass's findings depend on, cheaply and without storage:
  // every sequence number used (a write segment sealed, a roots record, a
  // GC rewrite, a checkpoint) and every layer a snapshot reader lets go of
  // changes it. Equal marks taken before two passes mean the second finds
  // nothing the first did not, except segments whose grace period ended
  // since (GcReport::next_delete_unix_ms), so a timer may skip it and send
  // nothing to storage (BackgroundGc; issue 26). nullopt: an ephemeral
  // volume, whose buffers change with every write; it has no storage to spare.
  struct ChangeMark {
    uint64_t next_seq = 0;
    size_t held_layers = 0;
    bool operator==(const ChangeMark&) const = default;
  };
  std::optional<ChangeMark> change_mark();
  // Uploads pending data and stores a compressed copy of the index in object
  // storage (checkpoints/<seq>.sqlite.zst); rebuilds start from the newest.
  Result<uint64_t> checkpoint();

  // read_described() of [offset, offset+out.size()) as seen from `top`
  // (nullptr: the live volume). Used by snapshot devices.
  Status read_view(const Layer* top, uint64_t offset, std::span<std::byte> out,
                   std::vector<StatusExtent>* extents = nullptr);
  // read_if_cached() of the same. It may still load a chunk of the index from
  // the local SQLite file; it never waits for a frame.
  bool read_view_if_cached(const Layer* top, uint64_t offset, std::span<std::byte> out,
                           std::vector<StatusExtent>* extents);
  Status block_status_view(const Layer* top, uint64_t offset, uint64_t length, size_t max_extents,
                           std::vector<StatusExtent>* out);

  VolumeStats stats();
  // Returns once every frame handed to the disk cache so far (uploaded or
  // fetched) is written there: it writes them on a thread of its own
  // (DiskFrameCache::put_object). close() does this too. At once without a
  // disk cache.
  void settle_disk_cache();
  const std::string& uuid() const { return uuid_; }
  std::string storage_url() const { return store_->url(); }

 private:
  friend class GarbageCollector;
  friend class Checkpointer;

  Volume(std::shared_ptr<ObjectStore> store, VolumeOptions opts);
  Status open_manifest();
  // After open_manifest(), before anything is read: opens the disk cache, if
  // asked for (a failure is logged and leaves it off), then the fetcher and,
  // with read-ahead on, the stream detector.
  void open_read_path();
  // No volume.json: kCorruption naming what the prefix holds, unless empty.
  Status check_prefix_is_empty();
  Status open_index();
  Result<std::unique_ptr<meta::Index>> open_index_or_move_aside();
  Status replay_storage();
  // Damaged storage (volume_damage.cc). Moves an object open() cannot use to
  // quarantine/<key> (copied, then removed): evidence is never deleted.
  Status quarantine_object(const std::string& key, const std::string& why);
  // After load_layers(): every segment a root reaches is in storage, whole
  // (its listed size is the one the index recorded).
  Status check_stored_references();
  // After load_layers(): volume.json's size covers every block holding data.
  Status check_size_covers_data();
  // After a repair: stores the state it accepted (the roots, then a
  // checkpoint), so later starts, from this index or from storage alone,
  // open it without --repair and without finding the same damage again.
  Status settle_repair();
  Result<SegmentFooter> read_segment_footer(const ObjectInfo& obj);
  Status load_layers();
  Status apply_roots_record(const std::vector<std::byte>& raw);
  // The layers and roots a roots record states (volume_snapshot.cc).
  struct RootsState {
    std::vector<meta::LayerRecord> layers;
    std::vector<meta::RootRecord> roots;
  };
  // One root change as a delta record states it: layers it adds, roots it
  // sets (by name: added or moved) and roots it removes.
  struct RootsDelta {
    std::vector<meta::LayerRecord> add_layers;
    std::vector<meta::RootRecord> set_roots;
    std::vector<std::string> drop_roots;
  };
  static void apply_delta(const RootsDelta& delta, RootsState* state);
  // The state a roots record (full, or a delta over the records before it)
  // states; reads the records a delta builds on. kCorruption when one is
  // unreadable or missing.
  Result<RootsState> roots_state_of(const std::vector<std::byte>& raw, int depth);
  // Stores the record of a root change: a delta over the newest record when
  // the chain of deltas is short, else the whole state (index + delta).
  // Returns its sequence number. REQUIRES: the upload lock held.
  Result<uint64_t> store_root_change(const RootsDelta& delta) REQUIRES(pipeline_.upload_mu());
  // After a whole record `seq` is stored: removes the records no start can
  // need any more (older than the chain before it). Failures are logged only.
  void prune_roots_records(uint64_t seq) REQUIRES(pipeline_.upload_mu());
  // The index's layers and roots as they are now.
  Result<RootsState> index_roots();
  // Stores `state` as a new roots record (a checkpoint first when GC merged
  // or dropped layers since the last one) and returns its sequence number.
  // A root change calls this BEFORE committing the change to the index
  // (rule R1 in volume_snapshot.cc). REQUIRES: the upload lock held.
  Result<uint64_t> store_roots_record(const RootsState& state) REQUIRES(pipeline_.upload_mu());
  // Stores the index's roots as they are (after a root change whose index
  // commit failed). REQUIRES: the upload lock held.
  Status write_roots_record() REQUIRES(pipeline_.upload_mu());
  // R2 of a root change whose record `seq` is stored: runs the index change
  // and records roots_seq. REQUIRES: the upload lock held.
  Status commit_root_change(uint64_t seq, const std::function<Status()>& change) REQUIRES(pipeline_.upload_mu());
  // Takes the checkpoint GC owes storage (needs_checkpoint_), if any; takes
  // the upload lock.
  Status checkpoint_if_needed();
  // Open: the index is checked against storage; an index that is behind a
  // checkpoint in storage (another writer's GC, a lost WAL) is rebuilt from
  // that checkpoint, never served (volume_reconcile.cc).
  Status rebuild_index_if_behind_storage();
  // Replay: true when no segment or checkpoint in storage is numbered above
  // `seq` (a torn roots record there is a crash's cut-short PUT).
  Result<bool> is_newest_object(uint64_t seq);
  // OK when storage's newest roots record is the one the index applied;
  // kFenced when storage holds a newer one (GC then deletes nothing).
  Status storage_roots_current();
  // needs_checkpoint_ is kept in the index too ("needs_checkpoint"), so a
  // restart after GC merged or dropped layers still checkpoints before the
  // next roots record. REQUIRES: the upload lock held (or open()).
  Status set_needs_checkpoint(bool on) REQUIRES(pipeline_.upload_mu());
  // A buffer of block data for the maps. Never a const object (see
  // BlockSource::private_to); on an ephemeral volume its bytes count in
  // buffer_bytes_ for as long as it lives.
  std::shared_ptr<const std::vector<std::byte>> make_block_buffer(std::vector<std::byte>&& bytes);
  // What holds the volume's data, in bytes: the segments in the index, or on
  // an ephemeral volume the block buffers alive.
  uint64_t bytes_stored();

  // The sources of [lba, lba+nblocks) by precedence, seen from `top`
  // (nullptr: live, including the write buffer); gaps are unmapped.
  Result<std::vector<Piece>> resolve(const Layer* top, uint64_t lba, uint64_t nblocks);
  Result<std::vector<Piece>> resolve_locked(const Layer* top, uint64_t lba, uint64_t nblocks) REQUIRES(layers_.mu());
  // Ephemeral volumes: copies `data` over [lba, lba+nblocks) when one extent
  // of the live layer maps all of it to bytes the live layer's own writes
  // made (BlockSource::private_to); false when it did not. Readers copy such
  // bytes under the engine mutex too, so none sees a block half written. REQUIRES: the engine mutex held.
  bool overwrite_in_place_locked(uint64_t lba, uint64_t nblocks, const std::byte* data) REQUIRES(layers_.mu());
  // Puts into *batch every stored frame `pieces` need: from the cache, from
  // an object the store holds in memory, or through the fetcher (disk cache,
  // then one ranged GET per run of frames stored back to back, many at once).
  // `cached_only`: no waiting (FrameFetcher::fetch_cached); kUnavailable when
  // a frame would need it.
  Status fetch_frames(const std::vector<Piece>& pieces, FrameBatch* batch, bool cached_only = false);
  // fetch_frames() of the frames the memory cache lacked, by segment.
  Status fetch_missing(const std::map<uint64_t, std::vector<FrameRef>>& missing, FrameBatch* batch, bool cached_only);
  // Tells the stream detector about a read of `view` (a layer, or nullptr:
  // live) and starts the read-ahead it asks for.
  void read_ahead(const Layer* top, uint64_t offset, uint64_t length);
  // Copies what `pieces` (a resolve() of the blocks) hold for
  // [offset, offset+out.size()) into `out`, describing it in *extents.
  Status read_pieces(const std::vector<Piece>& pieces, uint64_t offset, std::span<std::byte> out,
                     std::vector<StatusExtent>* extents, bool cached_only = false);
  Status read_blocks_into(const Piece& piece, uint64_t lba_base, uint64_t byte_offset, std::span<std::byte> out,
                          const FrameBatch* batch = nullptr);
  // One stored frame, from wherever fetch_frames() would take it.
  Result<FrameCache::Frame> load_frame(uint64_t seq, const FrameRef& ref);
  // Checks and decompresses one stored frame and caches it.
  // `stored_owner`, when given, keeps `stored` alive: a frame stored raw is
  // then cached in place instead of copied.
  Result<FrameCache::Frame> decode_and_cache(uint64_t seq, const FrameRef& ref, std::span<const std::byte> stored,
                                             std::shared_ptr<const void> stored_owner = nullptr);
  Status write_locked(uint64_t offset, std::span<const std::byte> data, std::vector<std::byte>* owned = nullptr);
  // Stores whole blocks (data or empty) into the active buffer (the live
  // layer, on an ephemeral volume).
  Status put_blocks(uint64_t lba, uint64_t nblocks, BlockSource src, uint64_t charged_bytes);
  // Stores whole blocks of data starting at block `lba`; `owned`, when given,
  // holds `data` and may be taken.
  Status put_data(uint64_t lba, std::span<const std::byte> data, std::vector<std::byte>* owned);
  // Zeroes [offset, offset+length): whole blocks as `whole_state`, edges as data.
  Status zero_range(uint64_t offset, uint64_t length, ExtentState whole_state, bool fua);
  Status check_range(uint64_t offset, uint64_t length, bool for_write) const;
  // kReadOnly for `what` on a read-only volume (VolumeOptions::read_only).
  Status read_only_refusal(const std::string& what) const;

  // Open, after a take-over (WriterLease L5): stores an empty segment under
  // every sequence number the previous holder may still be uploading to, so
  // none of its late PUTs lands among this daemon's segments
  // (volume_takeover.cc). After replay_storage(), before anything is served.
  Status claim_previous_writers_seqs();

  // The local journal (volume_journal.cc). open_journal(): after
  // replay_storage() and before anything is stored, opens the journal and
  // decides whether storage is still this journal's (adopting its writer id)
  // or another daemon moved on (the journal is set aside). replay_journal():
  // after load_layers(), puts the records storage does not hold back into
  // the write buffer.
  Status open_journal();
  Status replay_journal();
  // VolumeOptions::journal_drain: at the end of open, uploads what the
  // journal held and removes it; the volume goes on without one.
  Status drain_journal();
  // The writer of the newest segment in storage (0: none, or format < 4).
  Result<uint64_t> newest_segment_writer();
  // Appends one buffered write (wseq from FlushPipeline::buffer) to the
  // journal: its data, or with `direct` a marker (journal_direct_write_bytes).
  Status journal_append(uint64_t wseq, uint64_t lba, uint64_t nblocks, const BlockSource& src, bool direct);
  // Holds writers while uploads lag the journal by more than journal_max_lag_ms.
  Status wait_for_journal_lag();
  // FLUSH through the journal: the newest write taken, and one fdatasync
  // (group commit) covering every write answered before the ticket.
  uint64_t journal_ticket();
  // Seals and uploads everything buffered: a snapshot or restore on a
  // journaled volume does this before its roots record, so no journal
  // record is replayed across a layer change.
  Status upload_everything_locked() REQUIRES(pipeline_.upload_mu());
  Status journal_sync(FlushTicket ticket);
  // Whether a write that went to storage only is not committed yet: a FLUSH
  // on the journal must then upload first (journal_sync, flush_is_local).
  bool direct_write_pending() const;

  const std::shared_ptr<ObjectStore> store_;
  const VolumeOptions opts_;
  uint64_t size_bytes_ = 0;
  std::string uuid_;
  std::unique_ptr<meta::Index> index_;
  FrameCache cache_;
  std::unique_ptr<DiskFrameCache> disk_cache_;  // set by open(), then only read
  std::unique_ptr<FrameFetcher> fetcher_;       // set by open(), after disk_cache_
  std::unique_ptr<StreamDetector> streams_;     // set by open() with read-ahead on

  CutGate gate_;
  Mutex rmw_mu_;
  // One GC pass at a time; close() takes it too, so no pass outlives the
  // writer lease. gc() holds the upload lock only step by step (gc.cc).
  Mutex gc_mu_;
  LayerSet layers_;
  // Declared before the pipeline, whose commits release it, so it outlives it.
  std::unique_ptr<Journal> journal_;
  std::vector<JournalRecord> journal_replay_;  // open() only: recovered records
  uint64_t journal_newest_wseq_ = 0;           // open() only
  // The newest wseq of a write that went to storage only: a FLUSH uploads
  // while storage has not committed it (journal_sync).
  std::atomic<uint64_t> journal_direct_wseq_{0};
  std::atomic<uint64_t> journal_direct_writes_{0};
  FlushPipeline pipeline_{store_, layers_, opts_};
  Checkpointer checkpointer_{*this, pipeline_};
  std::unique_ptr<LeaseKeeper> lease_keeper_;  // with opts_.lease, from open() to close()
  // Keeps the flattened base behind the live layer (layer_set.h); from
  // open() to close(). Declared after what its steps use, so it stops first.
  std::unique_ptr<Flattener> flattener_;
  // Reads resolved, and the maps they overlaid (the base counts as one):
  // what a read costs in lookups, however deep the chain. Engine mutex.
  uint64_t resolves_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t resolve_maps_ GUARDED_BY(layers_.mu()) = 0;
  uint64_t next_layer_id_ GUARDED_BY(pipeline_.upload_mu()) = 2;
  // GC merged or dropped layers: storage needs a checkpoint before any roots
  // record that no longer names them. Mirrored in the index's meta
  // "needs_checkpoint" (set_needs_checkpoint), so it survives a restart.
  bool needs_checkpoint_ GUARDED_BY(pipeline_.upload_mu()) = false;
  // The chain of roots records in storage this process wrote: the whole
  // record it starts at, how many deltas follow, the newest (0: none yet,
  // the next change stores a whole record).
  uint64_t roots_chain_base_ GUARDED_BY(pipeline_.upload_mu()) = 0;
  uint64_t roots_chain_len_ GUARDED_BY(pipeline_.upload_mu()) = 0;
  uint64_t roots_chain_last_ GUARDED_BY(pipeline_.upload_mu()) = 0;

  std::atomic<uint64_t> overwrites_in_place_{0};
  uint64_t replayed_segments_ = 0;
  // open() only: the segments storage lists (seq -> bytes), for
  // check_stored_references(); emptied when open() is done.
  std::map<uint64_t, uint64_t> stored_segments_;
  bool repaired_ = false;  // open() accepted damage (opts_.repair); settle_repair() stores the result
  // Ephemeral volumes: bytes of block buffers alive (make_block_buffer). Shared
  // with the buffers' deleters, which may run after the volume is gone.
  const std::shared_ptr<std::atomic<uint64_t>> buffer_bytes_ = std::make_shared<std::atomic<uint64_t>>(0);
};

}  // namespace portalbd
