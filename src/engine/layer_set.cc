#include "src/engine/layer_set.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

#include "src/log/log.h"

namespace portalbd {

BlockSource BlockSource::sliced(uint64_t skip) const {
  BlockSource s = *this;
  if (state == ExtentState::kData) {
    if (buffered()) {
      s.byte_offset += skip * kBlockSize;
    } else {
      s.block_in_frame += static_cast<uint32_t>(skip);
    }
  }
  return s;
}

// Called under LayerSet::mu(), which the analysis cannot name from here.
Status Layer::visit(uint64_t lba, uint64_t nblocks,
                    const std::function<void(uint64_t, uint64_t, const BlockSource&)>& fn) const
    NO_THREAD_SAFETY_ANALYSIS {
  if (pager != nullptr) PBD_RETURN_IF_ERROR(pager->load_chunks_locked(*this, lba, nblocks));
  map.visit(lba, nblocks, fn);
  return Status::OK();
}

void Layer::assign(uint64_t lba, uint64_t nblocks, const BlockSource& src) {
  if (pager != nullptr) {
    // Only the loaded chunks take the change; the others read it from the
    // index when loaded. Each piece stays inside its chunk, as loads leave them.
    const uint64_t end = lba + nblocks;
    for (uint64_t at = lba; at < end;) {
      const uint64_t chunk = at / kIndexChunkBlocks;
      const uint64_t stop = std::min(end, (chunk + 1) * kIndexChunkBlocks);
      if (loaded.count(chunk)) map.assign(at, stop - at, at == lba ? src : src.sliced(at - lba));
      at = stop;
    }
    return;
  }
  map.visit(lba, nblocks, [&](uint64_t, uint64_t n, const BlockSource& old) {
    if (old.state == ExtentState::kData) data_bytes -= n * kBlockSize;
  });
  map.assign(lba, nblocks, src);
  if (src.state == ExtentState::kData) data_bytes += nblocks * kBlockSize;
}

void Layer::recount() {
  data_bytes = 0;
  for (const auto& [lba, node] : map.entries()) {
    if (node.value.state == ExtentState::kData) data_bytes += node.length * kBlockSize;
  }
}

BlockSource source_of(const meta::MappedExtent& row) {
  BlockSource src;
  src.state = row.state;
  src.seq = row.seq;
  src.frame = row.frame;
  src.block_in_frame = row.block_in_frame;
  return src;
}

meta::MappedExtent row_of(uint64_t lba, uint64_t nblocks, const BlockSource& src) {
  meta::MappedExtent x;
  x.lba = lba;
  x.nblocks = nblocks;
  x.state = src.state;
  x.seq = src.seq;
  x.frame = src.frame;
  x.block_in_frame = src.block_in_frame;
  return x;
}

std::vector<meta::MappedExtent> index_rows(const ExtentMap<BlockSource>& map) {
  std::vector<meta::MappedExtent> rows;
  for (const auto& [lba, node] : map.entries()) {
    if (!node.value.buffered()) rows.push_back(row_of(lba, node.length, node.value));
  }
  return rows;
}

std::shared_ptr<Layer> LayerSet::find_locked(uint64_t id) const {
  auto it = layers_.find(id);
  return it == layers_.end() ? nullptr : it->second;
}

Status LayerSet::load_locked(const std::vector<meta::LayerRecord>& layers, uint64_t live_id,
                             const std::function<Status(Layer&)>& fill) {
  layers_.clear();
  live_.reset();
  drop_base_locked();
  resident_extents_ = 0;
  for (const auto& rec : layers) {  // ascending ids: parents come first
    auto layer = std::make_shared<Layer>();
    layer->id = rec.id;
    if (rec.parent != 0) {
      layer->parent = find_locked(rec.parent);
      if (!layer->parent) return Status::Corruption("layer " + std::to_string(rec.id) + " has a missing parent");
    }
    if (index_ != nullptr) {  // nothing loaded: reads load what they need
      layer->pager = this;
      layer->data_bytes = rec.data_blocks * kBlockSize;
    } else {
      PBD_RETURN_IF_ERROR(fill(*layer));
      layer->recount();
    }
    layers_[rec.id] = layer;
    track_locked(layer);
  }
  live_ = find_locked(live_id);
  if (!live_) return Status::Corruption("the live layer is missing from the index");
  return Status::OK();
}

std::shared_ptr<Layer> LayerSet::start_live_locked(uint64_t id, std::shared_ptr<Layer> parent) {
  auto layer = std::make_shared<Layer>();
  layer->id = id;
  layer->parent = std::move(parent);
  if (index_ != nullptr) layer->pager = this;
  layers_[id] = layer;
  track_locked(layer);
  live_ = layer;
  return layer;
}

void LayerSet::forget_locked(uint64_t id) { layers_.erase(id); }

void LayerSet::track_locked(const std::shared_ptr<Layer>& layer) {
  std::erase_if(all_, [](const std::weak_ptr<Layer>& w) { return w.expired(); });
  all_.push_back(layer);
}

void LayerSet::for_each_held_locked(const std::function<void(const std::shared_ptr<Layer>&)>& fn) {
  std::set<const Layer*> seen;
  auto visit = [&](const std::shared_ptr<Layer>& layer) {
    if (seen.insert(layer.get()).second) fn(layer);
  };
  for (const auto& [id, layer] : layers_) visit(layer);
  for (const auto& weak : all_) {
    for (auto l = weak.lock(); l != nullptr; l = l->parent) visit(l);
  }
}

size_t LayerSet::alive_count_locked() const {
  return std::count_if(all_.begin(), all_.end(), [](const std::weak_ptr<Layer>& w) { return !w.expired(); });
}

uint64_t LayerSet::data_bytes_locked() const {
  uint64_t bytes = 0;
  for (const auto& [id, layer] : layers_) bytes += layer->data_bytes;
  return bytes;
}

std::vector<const Layer*> LayerSet::chain_locked(const Layer* top) const {
  if (top == nullptr) top = live_.get();
  std::vector<const Layer*> chain;
  for (const Layer* l = top; l != nullptr; l = l->parent.get()) chain.push_back(l);
  return chain;
}

Status LayerSet::overlay_chain(const std::vector<const Layer*>& chain, uint64_t lba, uint64_t nblocks,
                               ExtentMap<BlockSource>* view) {
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    PBD_RETURN_IF_ERROR(
        (*it)->visit(lba, nblocks, [&](uint64_t s, uint64_t n, const BlockSource& src) { view->assign(s, n, src); }));
  }
  return Status::OK();
}

Status LayerSet::set_index_locked(meta::Index* index, uint64_t budget_bytes) {
  drop_base_locked();
  flat_.reset();
  flat_dirty_ = false;
  base_->pager = nullptr;
  if (index != nullptr) {
    // The base's rows: derived, rebuilt after every start, so a private
    // temporary file that SQLite deletes when it is closed.
    auto flat = meta::Index::Open("");
    if (!flat.ok()) return flat.status().With("open the flattened base's rows");
    flat_ = std::move(*flat);
    base_->pager = this;
  }
  index_ = index;
  budget_bytes_ = budget_bytes;
  budget_extents_ = budget_bytes == 0 ? UINT64_MAX : std::max<uint64_t>(budget_bytes / kResidentExtentBytes, 1);
  return Status::OK();
}

Status LayerSet::load_chunks_locked(const Layer& layer, uint64_t lba, uint64_t nblocks) {
  if (nblocks == 0) return Status::OK();
  const uint64_t first = lba / kIndexChunkBlocks, last = (lba + nblocks - 1) / kIndexChunkBlocks;
  // Room first: what this read loads stays until it has been read.
  if (resident_extents_ > budget_extents_) shrink_cache_locked();
  for (uint64_t chunk = first; chunk <= last; ++chunk) {
    auto [it, fresh] = layer.loaded.try_emplace(chunk, 0);
    it->second = ++tick_;
    if (!fresh) continue;
    const uint64_t start = chunk * kIndexChunkBlocks, end = start + kIndexChunkBlocks;
    const size_t before = layer.map.size();
    uint64_t rows = 0;
    const bool base = &layer == base_.get();
    meta::Index* from = base ? flat_.get() : index_;
    Status st = from->load_range(base ? kBaseRows : layer.id, start, end, [&](const meta::MappedExtent& x) {
      const uint64_t s = std::max(start, x.lba), e = std::min(end, x.lba + x.nblocks);
      const BlockSource src = source_of(x);
      layer.map.assign(s, e - s, s == x.lba ? src : src.sliced(s - x.lba));
      rows++;
    });
    rows_loaded_ += rows;
    if (!st.ok()) {
      layer.map.erase(start, kIndexChunkBlocks);
      layer.loaded.erase(chunk);
      return st.With("load the index of layer " + std::to_string(layer.id) + " blocks " + std::to_string(start) + "-" +
                     std::to_string(end - 1));
    }
    resident_extents_ += layer.map.size() - before;
    chunk_loads_++;
  }
  return Status::OK();
}

void LayerSet::shrink_cache_locked() {
  struct Loaded {
    uint64_t tick;
    Layer* layer;
    uint64_t chunk;
  };
  std::vector<Loaded> all;
  std::vector<std::shared_ptr<Layer>> alive;  // kept alive while their maps shrink
  uint64_t total = 0;
  auto count = [&](std::shared_ptr<Layer> layer) {
    if (!layer || !layer->paged()) return;
    total += layer->map.size();
    for (const auto& [chunk, tick] : layer->loaded) all.push_back({tick, layer.get(), chunk});
    alive.push_back(std::move(layer));
  };
  for (const auto& weak : all_) count(weak.lock());
  count(base_);
  const uint64_t target = budget_extents_ / 4 * 3;
  if (total > target) {
    std::sort(all.begin(), all.end(), [](const Loaded& a, const Loaded& b) { return a.tick < b.tick; });
    for (const Loaded& l : all) {
      if (total <= target) break;
      const size_t before = l.layer->map.size();
      l.layer->map.erase(l.chunk * kIndexChunkBlocks, kIndexChunkBlocks);
      l.layer->loaded.erase(l.chunk);
      total -= before - l.layer->map.size();
      chunks_dropped_++;
    }
  }
  resident_extents_ = total;
}

Status LayerSet::make_resident_locked(Layer& layer) {
  if (!layer.paged()) return Status::OK();
  ExtentMap<BlockSource> map;
  PBD_RETURN_IF_ERROR(index_
                          ->load_range(layer.id, 0, UINT64_MAX / 2,
                                       [&](const meta::MappedExtent& x) { map.append(x.lba, x.nblocks, source_of(x)); })
                          .With("load layer " + std::to_string(layer.id) + " whole"));
  make_resident_locked(layer, std::move(map));
  return Status::OK();
}

void LayerSet::make_resident_locked(Layer& layer, ExtentMap<BlockSource> map) {
  if (layer.paged()) resident_extents_ -= std::min<uint64_t>(resident_extents_, layer.map.size());
  layer.map = std::move(map);
  layer.loaded.clear();
  layer.pager = nullptr;
  layer.recount();
}

void LayerSet::page_out_locked(Layer& layer) {
  if (index_ == nullptr || layer.paged()) return;
  layer.map.clear();
  layer.loaded.clear();
  layer.pager = this;  // data_bytes stays: the rows hold what the map held
}

IndexCacheStats LayerSet::index_cache_stats_locked() const {
  IndexCacheStats s;
  s.budget_bytes = budget_bytes_;
  s.resident_extents = resident_extents_;
  s.chunk_loads = chunk_loads_;
  s.rows_loaded = rows_loaded_;
  s.chunks_dropped = chunks_dropped_;
  for (const auto& weak : all_) {
    auto layer = weak.lock();
    if (!layer) continue;
    if (layer->paged()) {
      s.chunks_loaded += layer->loaded.size();
    } else {
      s.resident_layers++;
    }
  }
  s.chunks_loaded += base_->loaded.size();
  return s;
}

const Layer* LayerSet::read_path_locked(const Layer* top, std::vector<const Layer*>* above) const {
  if (top == nullptr) top = live_.get();
  // Half folded, the base is no layer's view but right under the layer
  // being folded (whose whole map then goes over it). A stop that is gone
  // is met by no chain.
  const std::shared_ptr<Layer> stop = folding_ ? base_folding_.lock() : base_top_.lock();
  for (const Layer* l = top; l != nullptr; l = l->parent.get()) {
    if (l == stop.get()) {
      if (folding_) above->push_back(l);
      return base_.get();
    }
    above->push_back(l);
  }
  return nullptr;
}

void LayerSet::layer_changed_locked(const Layer& layer) {
  if (layer.base_gen == base_gen_) drop_base_locked();
}

void LayerSet::drop_base_locked() {
  if (folding_ || !base_top_.expired() || base_filled_) rebuilds_++;
  base_->map.clear();
  base_->loaded.clear();
  base_filled_ = false;
  base_rows_ = 0;
  if (flat_) {  // its rows go before a new base starts (flatten_step)
    flat_dirty_ = true;
    drops_++;
  }
  base_top_.reset();
  base_folding_.reset();
  folding_ = false;
  fold_cursor_ = 0;
  fold_plan_.clear();
  base_gen_++;  // no layer is in the base any more
}

void LayerSet::finish_fold_locked(const std::shared_ptr<Layer>& layer) {
  base_top_ = layer;
  base_folding_.reset();
  folding_ = false;
  fold_cursor_ = 0;
  folds_++;
}

bool LayerSet::flatten_step_locked(size_t max_extents, const std::function<bool(const Layer&)>& pending) {
  if (!folding_) return plan_fold_locked(pending);
  const std::shared_ptr<Layer> layer = base_folding_.lock();
  if (!layer) {  // gone (GC merged it away and nobody reads it): start again
    drop_base_locked();
    return true;
  }
  const auto& entries = layer->map.entries();
  size_t n = 0;
  for (auto it = entries.lower_bound(fold_cursor_); it != entries.end(); ++it) {
    if (n++ == max_extents) {
      fold_cursor_ = it->first;
      return true;
    }
    base_->map.assign(it->first, it->second.length, it->second.value);
  }
  finish_fold_locked(layer);
  return true;
}

bool LayerSet::flatten_step(size_t max_extents, const std::function<bool(const Layer&)>& pending) {
  // With an index the base is rows too, of a private SQLite file (flat_):
  // a batch is read from the folding layer's rows and written into the
  // base's outside the lock, then the chunks of the base in memory take it
  // (the rule of every paged layer: the rows first, then what is loaded).
  struct Batch {
    bool clear = false;
    uint64_t gen = 0;
    std::shared_ptr<Layer> layer;
    uint64_t cursor = 0;
    std::vector<meta::MappedExtent> rows;  // read under the lock (a resident layer), or from the index
    bool from_index = false;
    bool more = false;
  } b;
  meta::Index* flat;
  meta::Index* index;
  {
    MutexLock lock(&mu_);
    if (!flat_) return flatten_step_locked(max_extents, pending);
    flat = flat_.get();
    index = index_;
    if (flat_dirty_) {
      b.clear = true;
      b.gen = drops_;
    } else if (!folding_) {
      return plan_fold_locked(pending);
    } else {
      b.layer = base_folding_.lock();
      if (!b.layer) {  // gone (GC merged it away and nobody reads it): start again
        drop_base_locked();
        return true;
      }
      b.gen = base_gen_;
      b.cursor = fold_cursor_;
      b.from_index = b.layer->paged();
      if (!b.from_index) {  // resident (GC is changing its rows): its map is the truth
        const auto& entries = b.layer->map.entries();
        for (auto it = entries.lower_bound(fold_cursor_); it != entries.end(); ++it) {
          if (b.rows.size() == max_extents) {
            b.more = true;
            break;
          }
          b.rows.push_back(row_of(it->first, it->second.length, it->second.value));
        }
      }
    }
  }
  if (b.clear) {
    const Status st = flat->drop_layer(kBaseRows);
    MutexLock lock(&mu_);
    if (!st.ok()) {
      log::get("engine")->warn("flattened base: cannot clear its rows error={}", log::quote(st.message()));
      return false;
    }
    if (drops_ == b.gen) flat_dirty_ = false;  // else dropped again meanwhile: clear again
    return true;
  }
  Status st;
  if (b.from_index) {
    st = index->scan_from(
        b.layer->id, b.cursor, max_extents, [&](const meta::MappedExtent& x) { b.rows.push_back(x); }, &b.more);
  }
  if (st.ok()) st = flat->overlay_rows(kBaseRows, b.rows);
  MutexLock lock(&mu_);
  if (base_gen_ != b.gen || !folding_ || base_folding_.lock() != b.layer || fold_cursor_ != b.cursor) {
    return true;  // the base was dropped meanwhile (its rows are cleared before the next)
  }
  if (!st.ok()) {  // reads walk their chains meanwhile; the next step starts again
    log::get("engine")->warn("flattened base: cannot fold layer {} error={}", b.layer->id, log::quote(st.message()));
    drop_base_locked();
    return false;
  }
  for (const auto& x : b.rows) base_->assign(x.lba, x.nblocks, source_of(x));  // its loaded chunks
  base_rows_ += b.rows.size();
  if (b.more && !b.rows.empty()) {
    fold_cursor_ = b.rows.back().lba + b.rows.back().nblocks;
    return true;
  }
  finish_fold_locked(b.layer);
  return true;
}

bool LayerSet::plan_fold_locked(const std::function<bool(const Layer&)>& pending) {
  const std::shared_ptr<Layer> target = live_ ? live_->parent : nullptr;
  const std::shared_ptr<Layer> top = base_top_.lock();
  if (!top && base_filled_) drop_base_locked();  // its top is gone: the base serves no read
  if (target == top) return false;
  if (target != checked_target_.lock()) {
    checked_target_ = target;
    size_t depth = 0;
    if (min_depth_ != SIZE_MAX) {
      for (const Layer* l = target.get(); l != nullptr && depth < min_depth_; l = l->parent.get()) depth++;
    }
    target_deep_ = depth >= min_depth_;
    fold_plan_.clear();
  }
  if (!target_deep_) {
    if (base_filled_ || folding_ || !base_top_.expired()) drop_base_locked();  // a shallow chain reads fast without
    return false;
  }
  // The next layer to fold sits right on top of the base's top; a plan that
  // no longer says so (a restore, a merge) is made again.
  std::shared_ptr<Layer> next = fold_plan_.empty() ? nullptr : fold_plan_.back().lock();
  if (!next || next->parent != top) {
    fold_plan_.clear();
    bool found = top == nullptr;
    for (auto l = target; l != nullptr; l = l->parent) {
      if (l == top) {
        found = true;
        break;
      }
      fold_plan_.push_back(l);
    }
    if (!found) {  // the chain left the base behind: start again from the root
      drop_base_locked();
      for (auto l = target; l != nullptr; l = l->parent) fold_plan_.push_back(l);
    }
    next = fold_plan_.back().lock();
  }
  if (flat_dirty_) return true;      // the old base's rows go first (flatten_step)
  if (pending(*next)) return false;  // its last writes are still on their way to its map
  next->base_gen = base_gen_;
  base_folding_ = next;
  folding_ = true;
  base_filled_ = true;
  fold_cursor_ = 0;
  fold_plan_.pop_back();
  return true;
}

void LayerSet::set_flatten_min_depth(size_t depth) {
  MutexLock lock(&mu_);
  min_depth_ = depth == 0 ? SIZE_MAX : depth;  // 0: never
  checked_target_.reset();
}

FlatBaseStats LayerSet::flat_stats_locked() const {
  FlatBaseStats s;
  s.extents = flat_ ? base_rows_ : base_->map.size();
  if (auto top = base_top_.lock()) s.top_layer = top->id;
  s.folds = folds_;
  s.rebuilds = rebuilds_;
  s.min_depth = min_depth_ == SIZE_MAX ? 0 : min_depth_;
  return s;
}

}  // namespace portalbd
