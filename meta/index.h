// meta::Index: the SQLite index that maps a volume's blocks to where their
// bytes are in object storage. It is a cache of what the segments say: the
// engine can rebuild it by replaying segment footers in sequence order.
//
// Model. Data lives in *layers*. A layer holds the extents written while it
// was the live layer, and has a parent (NULL for the first). A *root* names a
// layer: "live" is the writable volume; snapshots name frozen layers.
// Reading a root resolves a block in its layer, then its parent, and so on.
// This keeps snapshot create/restore O(1): freeze a layer and start a
// child, or start a child of a snapshot's layer and point "live" at it.
//
// Schema, version 3 (kSchemaVersion, kept in PRAGMA user_version; the
// migrations in index.cc: 0 -> 1 creates the tables, 1 -> 2 adds doomed_ms,
// 2 -> 3 adds data_blocks):
//   meta(key PRIMARY KEY, value)           volume_uuid, applied_seq, roots_seq,
//                                          checkpoint_seq, checkpoint_unix_ms,
//                                          needs_checkpoint, max_wseq (the newest
//                                          write sequence number a segment holds)
//   layers(id PRIMARY KEY, parent, created_ms, data_blocks)
//                                          data_blocks: blocks of its kData
//                                          extents, kept by every change
//   roots(name PRIMARY KEY, layer, kind, uuid, created_ms)   kind: live|snapshot
//   segments(seq PRIMARY KEY, layer, bytes, data_bytes, entries, created_ms,
//            doomed_ms)                    doomed_ms: when GC found it
//                                          unreferenced; 0 = in use
//   extents(layer, lba, nblocks, state, seq, frame_off, frame_len,
//           raw_len, codec, crc, block_in_frame, PRIMARY KEY(layer, lba))
//     Extents of one layer never overlap. A row with state kZero/kHole maps no
//     data but hides older data in parent layers.
//
// Durability: WAL. apply_segment() is one transaction: after a crash the
// index holds a segment's entries entirely or not at all. It commits with
// synchronous=NORMAL (no fsync): the segment it applies is already durable in
// object storage, and Volume::open() replays every segment newer than the
// index's last one, so losing a suffix of applies costs nothing. Every other
// transaction (roots, layers, GC) commits with synchronous=FULL, which also
// makes every earlier apply durable: the index never loses a root change, and
// GC never deletes an object that a durable row still names.
//
// Reading without waiting for writers. The engine keeps only part of the
// extents in memory and reads the rest from here on demand (LayerSet), with
// its own mutex held: those reads (load_range, scan_from, last_data_ends) go
// through a second, read-only connection with a mutex of its own, so they
// never queue behind a commit's fsync or a checkpoint copy. WAL gives that
// connection the state of the last commit when each read starts. An
// in-memory index has no second connection; its reads share the first.
//
// Thread-safety: all methods are safe concurrently; a mutex serializes them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "meta/sqlite.h"
#include "src/format/segment.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd::meta {

inline constexpr int kSchemaVersion = 3;

// One mapped range of a layer, as stored.
struct MappedExtent {
  uint64_t lba = 0;
  uint64_t nblocks = 0;
  ExtentState state = ExtentState::kData;
  uint64_t seq = 0;  // segment holding the data (kData only)
  FrameRef frame;    // the frame inside that segment (kData only)
  uint32_t block_in_frame = 0;
};

// A named root: "live" or a snapshot.
struct RootRecord {
  std::string name;
  uint64_t layer = 0;
  std::string kind;  // "live" | "snapshot"
  std::string uuid;
  int64_t created_unix_ms = 0;
};

struct LayerRecord {
  uint64_t id = 0;
  uint64_t parent = 0;  // 0: none
  int64_t created_unix_ms = 0;
  uint64_t data_blocks = 0;  // blocks its kData extents map (list_layers only)
};

struct SegmentRecord {
  uint64_t seq = 0;
  uint64_t layer = 0;
  uint64_t bytes = 0;       // object size
  uint64_t data_bytes = 0;  // raw data bytes it was written with
  int64_t doomed_ms = 0;    // when GC found it unreferenced; 0 = in use
};

struct IndexStats {
  uint64_t segments = 0;
  uint64_t bytes_stored = 0;  // sum of segment object sizes
  uint64_t data_bytes = 0;    // raw data bytes written into segments
  uint64_t extents = 0;
};

class Index {
 public:
  // Opens (creating and migrating as needed) the index at `path`; ":memory:"
  // for one in memory, "" for a private temporary file SQLite deletes when
  // the index is closed (neither has the second connection).
  static Result<std::unique_ptr<Index>> Open(const std::string& path);

  // Key/value facts about the volume (uuid, size_bytes, ...).
  Result<std::optional<std::string>> get_meta(const std::string& key) EXCLUDES(mu_);
  Status set_meta(const std::string& key, const std::string& value) EXCLUDES(mu_);

  // Highest segment sequence applied (0 when none).
  Result<uint64_t> last_seq() EXCLUDES(mu_);
  // The layer the "live" root names; creates layer 1 and the root on first use.
  Result<uint64_t> live_layer() EXCLUDES(mu_);
  // [root-most ... layer]: the chain a read of `layer` resolves through.
  Result<std::vector<uint64_t>> layer_chain(uint64_t layer) EXCLUDES(mu_);

  // Records one segment and applies its entries to footer.layer, trimming or
  // splitting older extents of that layer, in one transaction. With
  // `data_blocks`, sets it to the layer's data blocks after the change.
  Status apply_segment(const SegmentFooter& footer, uint64_t object_bytes, uint64_t* data_blocks = nullptr)
      EXCLUDES(mu_);

  // Calls fn for every extent of `layer`, in ascending lba order.
  Status scan_layer(uint64_t layer, const std::function<void(const MappedExtent&)>& fn) EXCLUDES(mu_);

  // ---- reads on the second connection (see the top of this file)
  // Calls fn, in ascending order, for every extent of `layer` overlapping
  // blocks [start, end), whole (not clipped).
  Status load_range(uint64_t layer, uint64_t start, uint64_t end, const std::function<void(const MappedExtent&)>& fn)
      EXCLUDES(reader_mu_, mu_);
  // Calls fn for at most `limit` extents of `layer` starting at or after
  // block `from`, in ascending order; *more says whether any is left.
  Status scan_from(uint64_t layer, uint64_t from, size_t limit, const std::function<void(const MappedExtent&)>& fn,
                   bool* more) EXCLUDES(reader_mu_, mu_);
  // For every layer, the block past its last kData extent (0: none): one
  // statement, one walk down the (layer, lba) key per layer.
  Result<std::map<uint64_t, uint64_t>> last_data_ends() EXCLUDES(reader_mu_, mu_);

  // Every layer and root, for loading the in-memory maps and for the roots
  // record kept in object storage.
  Result<std::vector<LayerRecord>> list_layers() EXCLUDES(mu_);
  Result<std::vector<RootRecord>> list_roots() EXCLUDES(mu_);
  // One root by name (a lookup, not a scan), or nullopt.
  Result<std::optional<RootRecord>> find_root(const std::string& name) EXCLUDES(mu_);

  // Snapshot create, in one transaction: `snapshot` names the current live
  // layer, and "live" moves to the new empty child layer `new_live`.
  Status create_snapshot(const RootRecord& snapshot, uint64_t new_live, int64_t now_ms) EXCLUDES(mu_);
  // Restore, in one transaction: optionally keep the current live layer as
  // `keep_current` (a snapshot root), then "live" moves to the new empty
  // layer `new_live` whose parent is `from_layer`.
  Status restore_snapshot(uint64_t from_layer, uint64_t new_live, const std::optional<RootRecord>& keep_current,
                          int64_t now_ms) EXCLUDES(mu_);
  // Removes a snapshot root. kNotFound when there is none by that name.
  Status delete_snapshot(const std::string& name) EXCLUDES(mu_);
  // Rewrites layers and roots wholesale (rebuild from a roots record).
  Status replace_roots(const std::vector<LayerRecord>& layers, const std::vector<RootRecord>& roots) EXCLUDES(mu_);

  // Garbage collection (src/engine/volume_gc.cc).
  Result<std::vector<SegmentRecord>> list_segments() EXCLUDES(mu_);
  Status set_doomed(uint64_t seq, int64_t doomed_ms) EXCLUDES(mu_);
  // Sets doomed_ms of many segments (seq, doomed_ms; 0 = referenced again)
  // in one transaction: one fsync, where one call per segment costs one each.
  Status set_doomed(const std::vector<std::pair<uint64_t, int64_t>>& marks) EXCLUDES(mu_);
  Status forget_segment(uint64_t seq) EXCLUDES(mu_);
  // Rewrites one layer's extents and parent in one transaction, dropping the
  // layers `drop_layers` (those merged into it).
  Status replace_layer(uint64_t layer, uint64_t parent, const std::vector<MappedExtent>& extents,
                       const std::vector<uint64_t>& drop_layers) EXCLUDES(mu_);
  Status drop_layer(uint64_t layer) EXCLUDES(mu_);
  // Sets the rows of `layer` over what it has, trimming or splitting older
  // ones as apply_segment does, in one transaction (the flattened base).
  Status overlay_rows(uint64_t layer, const std::vector<MappedExtent>& rows) EXCLUDES(mu_);
  // A consistent copy of the whole index in a new SQLite file (checkpoints).
  Status copy_to(const std::string& path) EXCLUDES(mu_);

  Result<IndexStats> stats() EXCLUDES(mu_);
  // Forgets everything (used when the index does not belong to the storage).
  Status reset() EXCLUDES(mu_);

 private:
  explicit Index(std::unique_ptr<Db> db) : db_(std::move(db)) {}
  Status migrate() REQUIRES(mu_);
  Status prepare_statements() REQUIRES(mu_);
  // Applies one entry; adds to *data_delta the change in data blocks.
  Status apply_entry(uint64_t layer, uint64_t seq, const SegmentEntry& e, const std::vector<FrameRef>& frames,
                     int64_t* data_delta) REQUIRES(mu_);
  Status insert_extent(uint64_t layer, const MappedExtent& x) REQUIRES(mu_);
  // Sets `x` in `layer`, trimming or splitting what it overlaps.
  Status put_extent(uint64_t layer, const MappedExtent& x, int64_t* data_delta) REQUIRES(mu_);
  Status set_meta_locked(const std::string& key, const std::string& value) REQUIRES(mu_);

  // Runs fn(db) on the read-only connection, or on the main one for an
  // in-memory index.
  Status with_reader(const std::function<Status(Db&)>& fn) EXCLUDES(reader_mu_, mu_);

  Mutex mu_;
  std::unique_ptr<Db> db_ GUARDED_BY(mu_);
  Mutex reader_mu_;
  std::unique_ptr<Db> reader_ GUARDED_BY(reader_mu_);  // null for an in-memory index
  // Prepared statements.
  Stmt left_overlap_ GUARDED_BY(mu_);
  Stmt inner_overlap_ GUARDED_BY(mu_);
  Stmt delete_extent_ GUARDED_BY(mu_);
  Stmt insert_extent_ GUARDED_BY(mu_);
  Stmt shrink_extent_ GUARDED_BY(mu_);
  Stmt add_data_blocks_ GUARDED_BY(mu_);
  Stmt insert_segment_ GUARDED_BY(mu_);
  Stmt raise_applied_seq_ GUARDED_BY(mu_);
  Stmt raise_max_wseq_ GUARDED_BY(mu_);
};

}  // namespace portalbd::meta
