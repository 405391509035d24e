#include "src/engine/layer_set.h"

#include <algorithm>
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

}  // namespace portalbd
