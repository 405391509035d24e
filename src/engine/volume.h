// Volume: the live, writable block device of one portalbd volume — the
// log-structured engine behind the NBD export.
//
// Data path
//   write  -> active buffer (memory)                     answered at once
//   seal   -> the active buffer becomes a sealed buffer with the next sequence
//             number (when it reaches segment_bytes, on FLUSH/FUA, on the
//             flush_interval_ms timer, at shutdown)
//   upload -> a sealed buffer is encoded as one segment object and PUT
//   commit -> the segment's entries are applied to the SQLite index in one
//             transaction, then to the in-memory live map, and the sealed
//             buffer is dropped
//   read   -> active buffer, then sealed buffers (newest first), then the live
//             map -> frame cache -> one ranged GET per run of missing
//             frames stored back to back (fetch_frames)
//
// Flush pipeline (a state machine per sealed buffer; transitions in
// volume_flush.cc, all driven by upload_through() under flush_mu_):
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
//              critical section (mu_), so no reader sees neither.
//
// Upload rules (W = upload_concurrency, at most kMaxUploadWindow):
//   U1. Only the first W buffers of sealing_ (the upload window) are ever
//       PUTTING, and at most W PUTs run at once (a pool of W threads; with
//       W = 1 the PUT runs inline, as before). So storage never holds an
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
//       and nothing uploads while flush_mu_ is free.
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
// Layers and snapshots (volume_snapshot.cc)
//   The index's layers are mirrored in memory as Layer objects, each with the
//   extents committed to it and a pointer to its parent. The live volume reads
//   through the chain live -> parent -> ...; a snapshot reads through the chain
//   of the layer it names. Snapshot create = seal the active buffer into the
//   current live layer and start an empty child layer; restore = start an
//   empty child of the snapshot's layer. Both are O(1): nothing is copied.
//   The cut happens with the CutGate closed and mu_ held, so every write
//   answered before it is on the old side and none after.
//
// Locking: mu_ guards the buffers and every Layer's map (held only for
// in-memory work, never across I/O). flush_mu_ serializes uploads and root
// changes (held across I/O; upload workers never take it, U4). gc_mu_
// serializes GC passes, which take flush_mu_ one step at a time. gate_
// brackets every mutating request. TaskPool's own mutex is a leaf.
// Lock order: gate_ (close) -> gc_mu_ -> flush_mu_ -> rmw_mu_ -> mu_.
//
// Thread-safety: every public method is safe to call concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>

#include "meta/index.h"
#include "src/engine/block_device.h"
#include "src/format/codec.h"
#include "src/engine/cut_gate.h"
#include "src/engine/extent_map.h"
#include "src/engine/frame_cache.h"
#include "src/format/segment.h"
#include "src/engine/writer_lease.h"
#include "src/store/object_store.h"
#include "src/util/task_pool.h"

namespace portalbd {

struct VolumeOptions {
  uint64_t size_bytes = 0;  // 0: the existing volume's size, or kDefaultSize for a new one
  bool grow = false;        // allow size_bytes larger than the existing volume
  uint64_t segment_bytes = 64ull << 20;
  uint64_t write_buffer_bytes = 256ull << 20;
  uint64_t flush_interval_ms = 1000;  // 0 disables the timer
  // Storage outages. While uploads fail with a retryable error (kIOError,
  // kUnavailable, kBusy), flush() keeps retrying and writers that find the
  // write buffer full keep waiting, until storage has accepted no upload for
  // this long; then they answer the error (EIO to NBD clients). Buffered data
  // is never dropped: it uploads once storage is back. 0: flush() fails at
  // the first failed upload and writers wait for buffer space indefinitely.
  uint64_t flush_timeout_ms = 0;
  // Sealed buffers encoded and PUT at once (the upload window, rule U1
  // above); clamped to [1, kMaxUploadWindow]. 1: one at a time.
  uint32_t upload_concurrency = 1;
  uint64_t cache_bytes = 256ull << 20;
  Codec codec = Codec::kLz4;
  // The SQLite file, or kInMemoryIndex for a store that starts empty and
  // keeps nothing (memory://): the index then costs no file I/O at all, and
  // cannot be restored from a checkpoint.
  std::string index_path;
  // The store dies with this process (memory://), so the volume's data can
  // live nowhere more durable than this process's memory. Writes then go
  // straight into the live layer's map as the buffers they arrived in: no
  // write buffer, no segments, no uploads, no index rows for them. An
  // overwrite or trim frees the bytes it replaces (once no snapshot or
  // reader holds them), so memory follows the live data, as in a RAM disk;
  // gc() compacts buffers that are mostly overwritten. flush() and FUA
  // return at once. Snapshots, restores and snapshot exports work as on any
  // volume (layers share the buffers). There is nothing to checkpoint.
  bool ephemeral = false;
  // The claim on the volume (DESIGN invariant 6). Checked before every
  // segment upload, renewed by the flusher, released by close(). Optional.
  std::shared_ptr<WriterLease> lease;
  // Damaged storage (docs/design.md, "What open() checks"): open() refuses
  // a volume whose storage lost or broke committed data, naming what is
  // wrong. With repair it accepts the loss instead: it moves what it cannot
  // read to quarantine/, logs every sequence number, layer and byte range
  // lost, and opens.
  bool repair = false;
};

inline constexpr uint64_t kDefaultVolumeSize = 1ull << 30;
inline constexpr const char* kInMemoryIndex = ":memory:";
// The widest upload window: a crash leaves at most this many segments past
// the last committed one, any of them torn or missing (replay_storage()).
inline constexpr uint32_t kMaxUploadWindow = 16;

struct VolumeStats {
  uint64_t size_bytes = 0;
  uint64_t dirty_bytes = 0;      // answered but not yet durable
  uint64_t segments = 0;         // segment objects in the index
  uint64_t bytes_stored = 0;     // their total size; ephemeral volumes: the bytes of the buffers holding data
  uint64_t segments_written = 0;  // by this process
  uint64_t bytes_uploaded = 0;    // by this process
  uint64_t flushes = 0;
  uint64_t overwrites_in_place = 0;  // ephemeral volumes: writes copied into their own earlier buffer
  // Of those, answered by an upload another caller made while they queued
  // for the upload lock (group commit): nothing left for them to seal.
  uint64_t flushes_grouped = 0;
  uint64_t flush_errors = 0;
  uint64_t cache_bytes = 0, cache_hits = 0, cache_misses = 0;
  uint64_t replayed_segments = 0;  // applied from storage at open
  uint64_t next_seq = 0;
  uint64_t bytes_live = 0;             // data bytes some root or reader reaches
  int64_t last_checkpoint_unix_ms = 0;  // 0: none yet
  uint64_t last_checkpoint_seq = 0;
  int64_t storage_failing_since_unix_ms = 0;  // 0: the last upload succeeded
  std::string last_storage_error;             // of the failing streak, if any
};

// Where the bytes of a run of blocks are: buffered in memory, stored in a
// segment frame, or nowhere (zeroed / trimmed).
struct BlockSource {
  ExtentState state = ExtentState::kHole;
  std::shared_ptr<const std::vector<std::byte>> bytes;  // buffered data
  uint64_t byte_offset = 0;                             // into *bytes
  // Ephemeral volumes: the live layer whose own writes made `bytes` (never a
  // const object). While that layer is live, only its map refers to those
  // bytes, so a later write of the same blocks may copy into them under mu_
  // (Volume::overwrite_in_place_locked) instead of allocating. 0: never.
  uint64_t private_to = 0;
  uint64_t seq = 0;                                     // stored data: segment
  FrameRef frame;                                       // ... and frame
  uint32_t block_in_frame = 0;

  bool buffered() const { return bytes != nullptr; }
  BlockSource sliced(uint64_t skip_blocks) const;
};

// One layer of the volume's history (see "Layers and snapshots" above).
struct Layer {
  uint64_t id = 0;
  std::shared_ptr<Layer> parent;
  ExtentMap<BlockSource> map;  // GUARDED_BY(Volume::mu_)
  uint64_t data_bytes = 0;     // data bytes `map` holds; GUARDED_BY(Volume::mu_)

  // Sets a range of `map`, keeping data_bytes right in O(overlap).
  void assign(uint64_t lba, uint64_t nblocks, const BlockSource& src);
  // Recounts data_bytes from scratch (after wholesale changes).
  void recount();
};

struct GcOptions {
  int64_t grace_ms = 60000;          // an unreferenced segment is deleted this long after GC finds it so
  double rewrite_live_ratio = 0.5;   // segments with less live data than this are rewritten
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
  uint64_t segments_doomed = 0;   // newly found unreferenced (deleted after the grace period)
  uint64_t segments_deleted = 0, bytes_deleted = 0;
  uint64_t segments_waiting = 0;  // unreferenced, still in their grace period
  int64_t next_delete_unix_ms = 0;  // when the next waiting one may go (0: none)
  uint64_t checkpoint_seq = 0;      // written by this pass (0: none needed)
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
  bool read_only() const override { return false; }
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
  bool reads_from_memory() const override { return opts_.ephemeral; }
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
  Status block_status_view(const Layer* top, uint64_t offset, uint64_t length, size_t max_extents,
                           std::vector<StatusExtent>* out);

  VolumeStats stats();
  const std::string& uuid() const { return uuid_; }
  std::string storage_url() const { return store_->url(); }

 private:
  struct Sealed {
    enum class Stage : uint8_t { kSealed, kPutting, kStored, kFailed };  // see the state machine above

    uint64_t seq = 0;
    uint64_t gen = 0;              // which seal made it: 1, 2, ... (seal_gen_); never reused
    uint64_t after_seq = 0;        // the buffer sealed before it, if uncommitted then (SegmentFooter)
    uint64_t prev_seq = 0;         // the write segment sealed before it, committed or not (SegmentFooter)
    std::shared_ptr<Layer> layer;  // where its extents go once committed
    ExtentMap<BlockSource> blocks;
    uint64_t bytes = 0;  // buffered bytes held
    Stage stage = Stage::kSealed;  // GUARDED_BY(mu_)
    Status put_error;              // why the last PUT failed (kFailed); GUARDED_BY(mu_)
    // Written by the PUT's worker while kPutting, read by upload_through()
    // after it saw the stage change under mu_ (U4). The object is built on
    // the first attempt and kept for retries until a PUT succeeds (U3);
    // shared with stores that keep objects in memory (put_shared).
    std::shared_ptr<const std::vector<std::byte>> object;
    uint64_t object_bytes = 0;
    std::optional<SegmentFooter> footer;
    uint64_t stored_tick = 0;  // puts_stored_ when its PUT succeeded (U7); GUARDED_BY(mu_)
  };
  using Piece = std::tuple<uint64_t, uint64_t, BlockSource>;  // lba, nblocks, source

  Volume(std::shared_ptr<ObjectStore> store, VolumeOptions opts);
  Status open_manifest();
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
  // The index's layers and roots as they are now.
  Result<RootsState> index_roots();
  // Stores `state` as a new roots record (a checkpoint first when GC merged
  // or dropped layers since the last one) and returns its sequence number.
  // A root change calls this BEFORE committing the change to the index
  // (rule R1 in volume_snapshot.cc). REQUIRES: flush_mu_ held.
  Result<uint64_t> store_roots_record(const RootsState& state);
  // Stores the index's roots as they are (after a root change whose index
  // commit failed). REQUIRES: flush_mu_ held.
  Status write_roots_record();
  // R2 of a root change whose record `seq` is stored: runs the index change
  // and records roots_seq. REQUIRES: flush_mu_ held.
  Status commit_root_change(uint64_t seq, const std::function<Status()>& change);
  // Takes the checkpoint GC owes storage (needs_checkpoint_), if any; takes
  // flush_mu_.
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
  // next roots record. REQUIRES: flush_mu_ held (or open()).
  Status set_needs_checkpoint(bool on);
  Status restore_checkpoint_if_fresh(bool fresh_index);
  Status restore_checkpoint(const std::string& key);  // one checkpoint; kCorruption when damaged
  Result<uint64_t> checkpoint_locked();  // REQUIRES: flush_mu_ held
  // Allocates `count` sequence numbers at a moment when no sealed buffer is
  // pending, so every lower sequence is committed. Holds back size-triggered
  // seals while it waits, so sustained writes cannot keep that moment from
  // coming. REQUIRES: flush_mu_ held.
  Result<uint64_t> quiet_seqs_locked(uint64_t count, const std::function<void()>& while_quiet);
  struct SegmentRef {
    uint64_t layer, lba, nblocks;
  };
  Status rewrite_segment_locked(uint64_t seq, const std::vector<SegmentRef>& refs, GcReport* report);
  // Ephemeral volumes only: copies the mapped blocks of mostly overwritten
  // write buffers out of them (volume_gc.cc). Takes mu_.
  void compact_buffers(const GcOptions& options, GcReport* report);
  // A buffer of block data for the maps. Never a const object (see
  // BlockSource::private_to); on an ephemeral volume its bytes count in
  // buffer_bytes_ for as long as it lives.
  std::shared_ptr<const std::vector<std::byte>> make_block_buffer(std::vector<std::byte>&& bytes);
  // What holds the volume's data, in bytes: the segments in the index, or on
  // an ephemeral volume the block buffers alive.
  uint64_t bytes_stored();
  // The index rows of a layer map (extents held in buffers have none).
  static std::vector<meta::MappedExtent> index_rows(const ExtentMap<BlockSource>& map);
  void track_layer_locked(const std::shared_ptr<Layer>& layer);  // REQUIRES: mu_ held
  // Calls fn once for every layer a root's chain or an open reader holds
  // (GC's view of what is reachable). REQUIRES: mu_ held.
  void for_each_held_layer_locked(const std::function<void(const std::shared_ptr<Layer>&)>& fn);

  // The sources of [lba, lba+nblocks) by precedence, seen from `top`
  // (nullptr: live, including the write buffer); gaps are unmapped.
  std::vector<Piece> resolve(const Layer* top, uint64_t lba, uint64_t nblocks);
  std::vector<Piece> resolve_locked(const Layer* top, uint64_t lba, uint64_t nblocks);  // REQUIRES: mu_ held
  // Ephemeral volumes: copies `data` over [lba, lba+nblocks) when one extent
  // of the live layer maps all of it to bytes the live layer's own writes
  // made (BlockSource::private_to); false when it did not. Readers copy such
  // bytes under mu_ too, so none sees a block half written. REQUIRES: mu_ held.
  bool overwrite_in_place_locked(uint64_t lba, uint64_t nblocks, const std::byte* data);
  // Frames one read has in hand, by (seq, offset in the segment object).
  using FrameBatch = std::map<std::pair<uint64_t, uint64_t>, FrameCache::Frame>;
  // Puts into *batch every stored frame `pieces` need: from the cache, or
  // fetched with one ranged GET per run of frames stored back to back (a
  // 1 MiB sequential read is one GET, not sixteen), and caches what it fetched.
  Status fetch_frames(const std::vector<Piece>& pieces, FrameBatch* batch);
  Status read_blocks_into(const Piece& piece, uint64_t lba_base, uint64_t byte_offset, std::span<std::byte> out,
                          const FrameBatch* batch = nullptr);
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
  // OK, or why writes are refused (closed, fenced). REQUIRES: mu_ held.
  Status writable_locked() const;
  // Zeroes [offset, offset+length): whole blocks as `whole_state`, edges as data.
  Status zero_range(uint64_t offset, uint64_t length, ExtentState whole_state, bool fua);
  Status check_range(uint64_t offset, uint64_t length, bool for_write) const;

  // Flush pipeline (volume_flush.cc).
  void seal_active_locked();                 // REQUIRES: mu_ held
  void seal_if_full_locked();                // REQUIRES: mu_ held
  // Commits every sealed buffer up to last_seq, PUTting up to
  // upload_window_ at once; on failure returns the error of the oldest
  // uncommitted one. With fill_window it also starts PUTs of buffers past
  // last_seq while the window has room (and waits for them, U4, without
  // committing them). REQUIRES: flush_mu_ held.
  Status upload_through(uint64_t last_seq, bool fill_window = false);
  // upload_through() the newest buffer sealed at the call, keeping the window
  // full: a bounded round, however fast writers seal. REQUIRES: flush_mu_ held.
  Status upload_sealed();
  // Locks flush_mu_ through `lock` (which owns it, unlocked) for anyone but
  // the flusher; see flush_claims_.
  void lock_flush_mu(std::unique_lock<std::mutex>& lock);
  // flush() proper: returns once every write answered before the call (or,
  // with a ticket, before the ticket was taken) is committed and the roots
  // record stored, waiting out storage outages up to flush_timeout_ms. Group
  // commit: whoever holds the upload lock seals and uploads everything
  // buffered, so callers that queued behind it often find their writes
  // committed and return without an upload of their own.
  Status make_durable(FlushTicket ticket = kFlushEverything);
  // The seal generation that will hold every write answered so far: the
  // active buffer's (the next seal), or the newest sealed one when the
  // active buffer is empty. REQUIRES: mu_ held.
  uint64_t covering_gen_locked() const;
  // Encodes (first attempt) and PUTs one buffer. Runs on an upload worker
  // without any lock held.
  Status put_segment(Sealed& sealed);
  // STORED -> COMMITTED for the head of sealing_. REQUIRES: flush_mu_ held.
  Status commit_segment(const std::shared_ptr<Sealed>& sealed);
  // Stores a new segment object under `key` after a lease check (U6): with
  // put_if_absent where the store enforces it (U7), where finding the key
  // taken by anything but these very bytes (an earlier attempt of ours)
  // fences the lease. Any thread.
  Status store_segment(const std::string& key, const std::shared_ptr<const std::vector<std::byte>>& object);
  // The lease check after PUTs and before what they make visible (U7): OK
  // without a lease. Any thread.
  Status confirm_writer(const std::string& what);
  // Open, after a take-over (WriterLease L5): stores an empty segment under
  // every sequence number the previous holder may still be uploading to, so
  // none of its late PUTs lands among this daemon's segments
  // (volume_takeover.cc). After replay_storage(), before anything is served.
  Status claim_previous_writers_seqs();
  void flusher_loop();
  // The flusher's lease renewal, every ttl/4 (see writer_lease.h). Flusher
  // thread only.
  void renew_lease_if_due();
  // How long storage has accepted no upload, counted from no earlier than
  // `since`. REQUIRES: mu_ held.
  std::chrono::milliseconds stalled_for_locked(std::chrono::steady_clock::time_point since) const;

  const std::shared_ptr<ObjectStore> store_;
  const VolumeOptions opts_;
  uint64_t size_bytes_ = 0;
  std::string uuid_;
  std::unique_ptr<meta::Index> index_;
  FrameCache cache_;

  CutGate gate_;
  std::mutex rmw_mu_;
  std::mutex flush_mu_;
  // Callers of flush_mu_ other than the flusher, waiting or holding
  // (lock_flush_mu). Under sustained writes the flusher always has more to
  // upload and would take the mutex back before any of them woke; it steps
  // aside for them between its rounds instead (they upload too).
  std::atomic<int> flush_claims_{0};
  // One GC pass at a time; close() takes it too, so no pass outlives the
  // writer lease. gc() holds flush_mu_ only step by step (volume_gc.cc).
  std::mutex gc_mu_;

  std::mutex mu_;
  std::condition_variable space_cv_;    // writers waiting for buffer space
  std::condition_variable flusher_cv_;  // wakes the flusher
  std::condition_variable retry_cv_;    // a flush() waiting out a storage outage
  std::condition_variable upload_cv_;   // a PUT finished or a buffer was sealed
  uint32_t puts_running_ = 0;           // GUARDED_BY(mu_)
  uint64_t puts_stored_ = 0;            // segment PUTs that succeeded (U7); GUARDED_BY(mu_)
  // Every PUT counted in puts_stored_ up to this was followed by a lease
  // check that passed (U7). GUARDED_BY(flush_mu_)
  uint64_t confirmed_tick_ = 0;
  // The last successful upload (or open()), and the current failing streak.
  std::chrono::steady_clock::time_point last_upload_ok_ = std::chrono::steady_clock::now();  // GUARDED_BY(mu_)
  int64_t failing_since_unix_ms_ = 0;            // GUARDED_BY(mu_)
  std::string last_storage_error_;               // GUARDED_BY(mu_)
  ExtentMap<BlockSource> active_;                // GUARDED_BY(mu_)
  uint64_t active_bytes_ = 0;                    // GUARDED_BY(mu_)
  // quiet_seqs_locked() waits for sealing_ to drain: writers keep filling the
  // active buffer but do not seal it meanwhile. GUARDED_BY(mu_)
  bool seals_held_ = false;
  std::deque<std::shared_ptr<Sealed>> sealing_;  // oldest first; GUARDED_BY(mu_)
  // Seal generations: the newest buffer sealed, and the newest committed.
  // Buffers commit in the order they were sealed, so every generation up to
  // committed_gen_ is durable. Unlike sequence numbers, which GC rewrites
  // and snapshots take too, generations count only write buffers: a FLUSH
  // knows from them whether someone else's upload already covered it.
  uint64_t seal_gen_ = 0;                        // GUARDED_BY(mu_)
  uint64_t committed_gen_ = 0;                   // GUARDED_BY(mu_)
  uint64_t sealing_bytes_ = 0;                   // GUARDED_BY(mu_)
  std::map<uint64_t, std::shared_ptr<Layer>> layers_;  // by id; GUARDED_BY(mu_)
  std::shared_ptr<Layer> live_;                  // the live layer; GUARDED_BY(mu_)
  // Every Layer object ever made, so GC sees layers that only an open
  // snapshot reader still holds. GUARDED_BY(mu_)
  std::vector<std::weak_ptr<Layer>> all_layers_;
  uint64_t next_layer_id_ = 2;                   // GUARDED_BY(flush_mu_)
  // The index's roots changed but storage's roots record does not say so yet
  // (its PUT failed): the next flush writes it. GUARDED_BY(flush_mu_)
  bool roots_dirty_ = false;
  // GC merged or dropped layers: storage needs a checkpoint before any roots
  // record that no longer names them. Mirrored in the index's meta
  // "needs_checkpoint" (set_needs_checkpoint), so it survives a restart.
  // GUARDED_BY(flush_mu_)
  bool needs_checkpoint_ = false;
  uint64_t next_seq_ = 1;                        // GUARDED_BY(mu_)
  // The newest write segment sealed (or, at open, the newest in storage): the
  // next one names it as its predecessor. GUARDED_BY(mu_)
  uint64_t last_write_seq_ = 0;
  bool closing_ = false;                         // GUARDED_BY(mu_)
  bool closed_ = false;                          // GUARDED_BY(mu_)

  std::chrono::steady_clock::time_point last_renew_;  // flusher thread only
  uint64_t lease_renewed_at_segments_ = 0;            // segments_written_ at the last tick; flusher thread only
  std::atomic<uint64_t> segments_written_{0}, bytes_uploaded_{0}, flushes_{0}, flushes_grouped_{0},
      flush_errors_{0}, overwrites_in_place_{0};
  uint64_t replayed_segments_ = 0;
  // open() only: the segments storage lists (seq -> bytes), for
  // check_stored_references(); emptied when open() is done.
  std::map<uint64_t, uint64_t> stored_segments_;
  bool repaired_ = false;  // open() accepted damage (opts_.repair); settle_repair() stores the result
  // Ephemeral volumes: bytes of block buffers alive (make_block_buffer). Shared
  // with the buffers' deleters, which may run after the volume is gone.
  const std::shared_ptr<std::atomic<uint64_t>> buffer_bytes_ = std::make_shared<std::atomic<uint64_t>>(0);
  const uint32_t upload_window_;  // opts_.upload_concurrency, clamped (U1)
  // Runs the PUTs: upload_window_ threads, or none (inline) for a window of 1.
  // Declared after everything its jobs touch, so it is destroyed first.
  std::unique_ptr<TaskPool> upload_pool_;
  std::thread flusher_;
};

}  // namespace portalbd
