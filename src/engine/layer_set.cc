#include "src/engine/layer_set.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

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

void Layer::assign(uint64_t lba, uint64_t nblocks, const BlockSource& src) {
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

std::vector<meta::MappedExtent> index_rows(const ExtentMap<BlockSource>& map) {
  std::vector<meta::MappedExtent> rows;
  for (const auto& [lba, node] : map.entries()) {
    if (node.value.buffered()) continue;
    meta::MappedExtent x;
    x.lba = lba;
    x.nblocks = node.length;
    x.state = node.value.state;
    x.seq = node.value.seq;
    x.frame = node.value.frame;
    x.block_in_frame = node.value.block_in_frame;
    rows.push_back(x);
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
  for (const auto& rec : layers) {  // ascending ids: parents come first
    auto layer = std::make_shared<Layer>();
    layer->id = rec.id;
    if (rec.parent != 0) {
      layer->parent = find_locked(rec.parent);
      if (!layer->parent) return Status::Corruption("layer " + std::to_string(rec.id) + " has a missing parent");
    }
    PBD_RETURN_IF_ERROR(fill(*layer));
    layer->recount();
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

void LayerSet::overlay_chain(const std::vector<const Layer*>& chain, uint64_t lba, uint64_t nblocks,
                             ExtentMap<BlockSource>* view) {
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    (*it)->map.visit(lba, nblocks, [&](uint64_t s, uint64_t n, const BlockSource& src) { view->assign(s, n, src); });
  }
}

const ExtentMap<BlockSource>* LayerSet::read_path_locked(const Layer* top, std::vector<const Layer*>* above) const {
  if (top == nullptr) top = live_.get();
  // Half folded, the base is no layer's view but right under the layer
  // being folded (whose whole map then goes over it). A stop that is gone
  // is met by no chain.
  const std::shared_ptr<Layer> stop = folding_ ? base_folding_.lock() : base_top_.lock();
  for (const Layer* l = top; l != nullptr; l = l->parent.get()) {
    if (l == stop.get()) {
      if (folding_) above->push_back(l);
      return &base_;
    }
    above->push_back(l);
  }
  return nullptr;
}

void LayerSet::layer_changed_locked(const Layer& layer) {
  if (layer.base_gen == base_gen_) drop_base_locked();
}

void LayerSet::drop_base_locked() {
  if (folding_ || !base_top_.expired() || !base_.empty()) rebuilds_++;
  base_.clear();
  base_top_.reset();
  base_folding_.reset();
  folding_ = false;
  fold_cursor_ = 0;
  fold_plan_.clear();
  base_gen_++;  // no layer is in the base any more
}

bool LayerSet::flatten_step_locked(size_t max_extents, const std::function<bool(const Layer&)>& pending) {
  if (folding_) {
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
      base_.assign(it->first, it->second.length, it->second.value);
    }
    base_top_ = layer;
    base_folding_.reset();
    folding_ = false;
    fold_cursor_ = 0;
    folds_++;
    return true;
  }
  const std::shared_ptr<Layer> target = live_ ? live_->parent : nullptr;
  const std::shared_ptr<Layer> top = base_top_.lock();
  if (!top && !base_.empty()) drop_base_locked();  // its top is gone: the base serves no read
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
    drop_base_locked();  // a shallow chain reads fast without: spare the memory
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
  if (pending(*next)) return false;  // its last writes are still on their way to its map
  next->base_gen = base_gen_;
  base_folding_ = next;
  folding_ = true;
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
  s.extents = base_.size();
  if (auto top = base_top_.lock()) s.top_layer = top->id;
  s.folds = folds_;
  s.rebuilds = rebuilds_;
  s.min_depth = min_depth_ == SIZE_MAX ? 0 : min_depth_;
  return s;
}

}  // namespace portalbd
