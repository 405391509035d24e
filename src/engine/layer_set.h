// LayerSet: the volume's history in memory, and the engine mutex.
//
// The index's layers are mirrored here as Layer objects, each with the
// extents committed to it and a pointer to its parent. The live volume reads
// through the chain live -> parent -> ...; a snapshot reads through the chain
// of the layer it names. Snapshot create = start an empty child of the live
// layer; restore = start an empty child of the snapshot's layer. Both are
// O(1): nothing is copied (see volume_snapshot.cc).
//
// Besides the layers the index names, the set keeps track of every Layer it
// ever handed out (Hold), so GC still sees the layers that only an open
// snapshot reader holds after the snapshot was deleted or merged away.
//
// The flattened base. A read resolves through its chain one map per layer,
// so after thousands of snapshots every read of the live volume would walk
// thousands of maps. The set therefore keeps one flattened map, the base,
// equal to what a read of one frozen layer of the live chain (its top) sees.
// A read whose chain passes through that layer overlays the base and then
// only the layers above it: the live layer and the few frozen since the
// base caught up. Reads cost the same with 10 or 10,000 snapshots behind.
//
// Volume's flattener thread keeps the base behind the live layer's parent
// (flatten_step_locked): it folds frozen layers in, oldest first, a bounded
// number of extents per critical section, so writers never wait long. While
// a layer is being folded, a read through it overlays the base and then that
// layer's whole map, which is right whatever part of it the base holds yet.
// Snapshot create adds a layer to fold; restore starts a chain that may not
// pass through the base's top: reads walk their full chain (correct, slower)
// until the base is rebuilt for the new chain. Frozen maps change only when
// GC moves blocks (segment rewrite, buffer compaction) or a repair zeroes
// them: such a change to a layer in the base drops the base
// (layer_changed_locked). GC merges need nothing: the merged map over the
// grandparent is the same view, and a merged-away top is no longer met.
// The base is built only for chains of at least `min_depth` frozen layers;
// it costs a second map entry for every extent it holds (docs/design.md).
//
// The index stays on disk (issue 23). Unless the volume is ephemeral, a
// layer's extents are rows of the index (meta::Index), and its map holds
// only the chunks (kIndexChunkBlocks blocks of the device each) that reads
// needed lately: a read loads the chunks it touches from the index (one
// range query each, on the index's read-only connection), and once the
// loaded chunks of all layers exceed the cache budget ([cache] index_bytes)
// the least recently used are dropped. Opening a volume loads none, so it
// costs the same with millions of extents as with none. The map is a cache
// of the rows: a change to the rows (a commit, a GC move) is applied to the
// loaded chunks it touches and skipped for the others. A layer can be made
// resident (every extent in its map, never dropped): GC does so for the
// layers a merge rewrites until the index holds the merge, since a chunk
// loaded in between could see half of it; a layer the index forgets while
// a reader still holds it stays resident for good. Ephemeral volumes keep
// every layer resident (their maps hold buffers, which have no rows).
//
// The mutex. mu() guards every Layer's map and this set, and the flush
// pipeline's write buffers too (FlushPipeline): a segment's commit moves its
// blocks from a sealed buffer to its layer's map in one critical section, so
// no reader ever sees neither. It is held only for in-memory work, never
// across I/O, and it is the innermost lock of the engine (see volume.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "meta/index.h"
#include "src/engine/extent_map.h"
#include "src/format/segment.h"
#include "src/util/mutex.h"

namespace portalbd {

// Where the bytes of a run of blocks are: buffered in memory, stored in a
// segment frame, or nowhere (zeroed / trimmed). One per extent of every
// layer's map: `state` sits after `block_in_frame`, in bytes that are padding
// anyway (72 bytes, not 80: a map node fits malloc's 128-byte size class).
struct BlockSource {
  std::shared_ptr<const std::vector<std::byte>> bytes;  // buffered data
  uint64_t byte_offset = 0;                             // into *bytes
  // Ephemeral volumes: the live layer whose own writes made `bytes` (never a
  // const object). While that layer is live, only its map refers to those
  // bytes, so a later write of the same blocks may copy into them under the
  // mutex (Volume::overwrite_in_place_locked) instead of allocating. 0: never.
  uint64_t private_to = 0;
  uint64_t seq = 0;  // stored data: segment
  FrameRef frame;    // ... and frame
  uint32_t block_in_frame = 0;
  ExtentState state = ExtentState::kHole;

  bool buffered() const { return bytes != nullptr; }
  BlockSource sliced(uint64_t skip_blocks) const;
};

// A run of blocks and where they are: (lba, nblocks, source).
using Piece = std::tuple<uint64_t, uint64_t, BlockSource>;

// Blocks of the device per chunk of a paged layer's map (1 MiB): a read
// loads whole chunks, the cache drops whole chunks.
inline constexpr uint64_t kIndexChunkBlocks = 256;
// What a loaded extent costs in memory, for the cache budget: a map node
// (128 bytes) and a share of its chunk's bookkeeping.
inline constexpr uint64_t kResidentExtentBytes = 160;

class LayerSet;

// One layer of the volume's history. Its map, data_bytes and paging state
// are guarded by the LayerSet's mutex (the set hands out shared pointers to
// layers, so the annotation cannot name it here).
struct Layer {
  uint64_t id = 0;
  std::shared_ptr<Layer> parent;
  // Every extent (resident), or those of the loaded chunks (paged). Mutable:
  // a read of a const layer loads chunks into it.
  mutable ExtentMap<BlockSource> map;
  uint64_t data_bytes = 0;  // data bytes the layer maps (all of them, loaded or not)
  uint64_t base_gen = 0;    // == LayerSet's base generation: folded (or being folded) into the base
  // Paged: the set that loads its chunks from the index; null: resident.
  LayerSet* pager = nullptr;
  // Paged: the loaded chunks (chunk number -> the tick of its last use).
  mutable std::unordered_map<uint64_t, uint64_t> loaded;

  bool paged() const { return pager != nullptr; }
  // Calls fn(lba, n, source) for each mapped piece of [lba, lba+nblocks),
  // loading the chunks a paged layer has not loaded. Errors: the index
  // cannot be read.
  Status visit(uint64_t lba, uint64_t nblocks,
               const std::function<void(uint64_t, uint64_t, const BlockSource&)>& fn) const;
  // Sets a range: in `map` for a resident layer, keeping data_bytes right in
  // O(overlap); for a paged one only in the chunks it has loaded (the index
  // holds the change, and the caller sets data_bytes from it).
  void assign(uint64_t lba, uint64_t nblocks, const BlockSource& src);
  // Recounts data_bytes from scratch (a resident layer, after wholesale changes).
  void recount();
};

// Where an index row's blocks are.
BlockSource source_of(const meta::MappedExtent& row);

// The index rows of a layer map (extents held in buffers have none).
std::vector<meta::MappedExtent> index_rows(const ExtentMap<BlockSource>& map);
// The index row of one extent [lba, lba+nblocks) mapped to `src` (not buffered).
meta::MappedExtent row_of(uint64_t lba, uint64_t nblocks, const BlockSource& src);

// What the index cache holds and has done (status, tests).
struct IndexCacheStats {
  uint64_t budget_bytes = 0;      // [cache] index_bytes; 0: every layer resident
  uint64_t resident_extents = 0;  // extents in the maps of paged layers (at the last count)
  uint64_t chunks_loaded = 0;     // chunks in memory now
  uint64_t chunk_loads = 0;       // since open
  uint64_t rows_loaded = 0;       // index rows those loads read
  uint64_t chunks_dropped = 0;    // by the budget, since open
  uint64_t resident_layers = 0;   // layers kept whole (ephemeral, or pinned by GC / a reader)
};

// What the flattened base holds now (status, tests).
struct FlatBaseStats {
  uint64_t extents = 0;    // entries of the base map
  uint64_t top_layer = 0;  // the layer whose view it is; 0: none
  uint64_t folds = 0;      // layers folded in since open
  uint64_t rebuilds = 0;   // times it was dropped and started again
  uint64_t min_depth = 0;
};

class LayerSet {
 public:
  // The engine mutex (see the top of this file).
  Mutex& mu() RETURN_CAPABILITY(mu_) { return mu_; }

  // The live layer; nullptr before load().
  const std::shared_ptr<Layer>& live_locked() const REQUIRES(mu_) { return live_; }
  // The layer the index names `id`, or nullptr.
  std::shared_ptr<Layer> find_locked(uint64_t id) const REQUIRES(mu_);
  // The layers the index names, by id.
  const std::map<uint64_t, std::shared_ptr<Layer>>& by_id_locked() const REQUIRES(mu_) { return layers_; }

  // Replaces the whole set with `layers` (ascending ids, parents first) and
  // makes `live_id` live. With an index (set_index_locked), each layer is
  // paged, nothing loaded; without, each is filled by `fill`. kCorruption
  // when a parent or the live layer is missing.
  Status load_locked(const std::vector<meta::LayerRecord>& layers, uint64_t live_id,
                     const std::function<Status(Layer&)>& fill) REQUIRES(mu_);
  // Adds an empty layer `id` on top of `parent` and makes it live.
  std::shared_ptr<Layer> start_live_locked(uint64_t id, std::shared_ptr<Layer> parent) REQUIRES(mu_);
  // The index no longer names `id` (GC dropped or merged it). Readers that
  // hold it keep it, and GC keeps seeing it through them.
  void forget_locked(uint64_t id) REQUIRES(mu_);

  // Calls fn once for every layer a named layer's chain or an open reader
  // holds (GC's view of what is reachable).
  void for_each_held_locked(const std::function<void(const std::shared_ptr<Layer>&)>& fn) REQUIRES(mu_);
  // How many Layer objects are alive (named or held by readers).
  size_t alive_count_locked() const REQUIRES(mu_);
  // Data bytes the named layers hold.
  uint64_t data_bytes_locked() const REQUIRES(mu_);

  // The chain seen from `top` (nullptr: the live layer), newest first.
  std::vector<const Layer*> chain_locked(const Layer* top) const REQUIRES(mu_);
  // Assigns into *view every extent of [lba, lba+nblocks) the chain maps,
  // older layers first so newer ones win.
  static Status overlay_chain(const std::vector<const Layer*>& chain, uint64_t lba, uint64_t nblocks,
                              ExtentMap<BlockSource>* view);

  // ---- the index cache (see the top of this file)
  // Layers loaded or started from now on are paged from `index` with a
  // budget of `budget_bytes` (0: no limit), and so is the flattened base
  // (from rows of its own); nullptr: resident. Drops the base.
  Status set_index_locked(meta::Index* index, uint64_t budget_bytes) REQUIRES(mu_);
  // Loads the chunks of [lba, lba+nblocks) that paged `layer` lacks.
  Status load_chunks_locked(const Layer& layer, uint64_t lba, uint64_t nblocks) REQUIRES(mu_);
  // Every extent of `layer` in its map, for good or until page_out_locked.
  Status make_resident_locked(Layer& layer) REQUIRES(mu_);
  // Makes `layer` resident with `map` (its every extent, read by the caller).
  void make_resident_locked(Layer& layer, ExtentMap<BlockSource> map) REQUIRES(mu_);
  // A resident layer whose rows in the index equal its map is paged again,
  // nothing loaded (no-op without an index).
  void page_out_locked(Layer& layer) REQUIRES(mu_);
  IndexCacheStats index_cache_stats_locked() const REQUIRES(mu_);
  meta::Index* index_locked() const REQUIRES(mu_) { return index_; }

  // ---- the flattened base (see the top of this file)
  // What a read of `top` (nullptr: the live layer) overlays: the returned
  // layer first (the base, or nullptr when the chain does not pass through
  // it), then *above (newest first) from its back to its front.
  const Layer* read_path_locked(const Layer* top, std::vector<const Layer*>* above) const REQUIRES(mu_);
  // The map of `layer`, frozen, was changed (GC, repair): a base holding it
  // is dropped, to be rebuilt.
  void layer_changed_locked(const Layer& layer) REQUIRES(mu_);
  // One bounded step towards a base that is the live layer's parent's view:
  // folds at most `max_extents` extents, or picks the next layer to fold (not
  // one `pending` says still has uncommitted writes). True when it did
  // something and more may follow at once; false when idle.
  bool flatten_step_locked(size_t max_extents, const std::function<bool(const Layer&)>& pending) REQUIRES(mu_);
  // The same for any set (the flattener thread's): with an index, the base's
  // rows are read and written outside the lock, which it takes as needed.
  bool flatten_step(size_t max_extents, const std::function<bool(const Layer&)>& pending) EXCLUDES(mu_);
  // Chains with fewer frozen layers than this get no base (default 16; 0:
  // none ever).
  void set_flatten_min_depth(size_t depth) EXCLUDES(mu_);
  FlatBaseStats flat_stats_locked() const REQUIRES(mu_);

 private:
  void track_locked(const std::shared_ptr<Layer>& layer) REQUIRES(mu_);
  void drop_base_locked() REQUIRES(mu_);
  // Not folding: picks the next layer to fold towards the target (or drops
  // a base no read needs). What flatten_step_locked returns.
  bool plan_fold_locked(const std::function<bool(const Layer&)>& pending) REQUIRES(mu_);
  void finish_fold_locked(const std::shared_ptr<Layer>& layer) REQUIRES(mu_);
  // Drops the least recently used chunks until the loaded ones fit 3/4 of
  // the budget (counting them exactly first).
  void shrink_cache_locked() REQUIRES(mu_);

  Mutex mu_;
  std::map<uint64_t, std::shared_ptr<Layer>> layers_ GUARDED_BY(mu_);  // the index's, by id
  std::shared_ptr<Layer> live_ GUARDED_BY(mu_);
  // Every Layer object ever made, so GC sees layers that only an open
  // snapshot reader still holds.
  std::vector<std::weak_ptr<Layer>> all_ GUARDED_BY(mu_);

  // The flattened base: `base_` is the view of `base_top_` (unset: the
  // empty view) with, while `folding_`, the extents of `base_folding_`
  // before `fold_cursor_` folded in. Layers with base_gen == base_gen_ are in
  // it. Weak pointers: the base keeps no layer alive (a layer only it held
  // would look held by a reader to GC), and one that is gone is not met by
  // any read, which then walks its chain.
  // The base: resident without an index; with one, paged from the rows of
  // layer kBaseRows in flat_, a private temporary SQLite file. Not in all_:
  // GC never counts it (its rows name the same segments the layers do).
  const std::shared_ptr<Layer> base_ = std::make_shared<Layer>();
  std::unique_ptr<meta::Index> flat_ GUARDED_BY(mu_);
  static constexpr uint64_t kBaseRows = 1;
  bool flat_dirty_ GUARDED_BY(mu_) = false;   // flat_ holds a dropped base's rows
  uint64_t drops_ GUARDED_BY(mu_) = 0;        // of a base with rows in flat_
  bool base_filled_ GUARDED_BY(mu_) = false;  // a fold started since the last drop
  uint64_t base_rows_ GUARDED_BY(mu_) = 0;    // rows written into flat_ since then
  std::weak_ptr<Layer> base_top_ GUARDED_BY(mu_);
  std::weak_ptr<Layer> base_folding_ GUARDED_BY(mu_);
  bool folding_ GUARDED_BY(mu_) = false;
  uint64_t fold_cursor_ GUARDED_BY(mu_) = 0;
  uint64_t base_gen_ GUARDED_BY(mu_) = 1;
  // The layers still to fold towards the target, oldest at the back.
  std::vector<std::weak_ptr<Layer>> fold_plan_ GUARDED_BY(mu_);
  // The target last measured, and whether its chain was deep enough.
  std::weak_ptr<Layer> checked_target_ GUARDED_BY(mu_);
  bool target_deep_ GUARDED_BY(mu_) = false;
  size_t min_depth_ GUARDED_BY(mu_) = 16;
  uint64_t folds_ GUARDED_BY(mu_) = 0;
  uint64_t rebuilds_ GUARDED_BY(mu_) = 0;

  // The index cache.
  meta::Index* index_ GUARDED_BY(mu_) = nullptr;
  uint64_t budget_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t budget_extents_ GUARDED_BY(mu_) = UINT64_MAX;
  uint64_t tick_ GUARDED_BY(mu_) = 0;
  uint64_t resident_extents_ GUARDED_BY(mu_) = 0;  // exact after each shrink, counted up by loads between
  uint64_t chunk_loads_ GUARDED_BY(mu_) = 0;
  uint64_t rows_loaded_ GUARDED_BY(mu_) = 0;
  uint64_t chunks_dropped_ GUARDED_BY(mu_) = 0;
};

}  // namespace portalbd
