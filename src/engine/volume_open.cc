// Volume::Open: the volume manifest, the index, and replay of segments that
// the index has not seen yet (after a crash between PUT and commit, or with a
// fresh state directory).
#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "src/util/clock.h"
#include "src/engine/uuid.h"
#include "src/engine/volume.h"
#include "src/log/log.h"

namespace portalbd {
namespace {

constexpr const char* kManifestKey = "volume.json";

std::vector<std::byte> to_bytes(const std::string& s) {
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

std::string human_size(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g %s", v, units[u]);
  return buf;
}

}  // namespace

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

Volume::Volume(std::shared_ptr<ObjectStore> store, VolumeOptions opts)
    : store_(std::move(store)),
      opts_(std::move(opts)),
      cache_(opts_.cache_bytes),
      upload_window_(std::clamp<uint32_t>(opts_.upload_concurrency, 1, kMaxUploadWindow)),
      upload_pool_(std::make_unique<TaskPool>(upload_window_ > 1 ? upload_window_ : 0)) {}

Result<std::shared_ptr<Volume>> Volume::Open(std::shared_ptr<ObjectStore> store, VolumeOptions opts) {
  std::shared_ptr<Volume> v(new Volume(std::move(store), std::move(opts)));
  PBD_RETURN_IF_ERROR(v->open_manifest());
  PBD_RETURN_IF_ERROR(v->open_index());
  PBD_RETURN_IF_ERROR(v->replay_storage());
  PBD_RETURN_IF_ERROR(v->load_layers());
  v->flusher_ = std::thread([raw = v.get()] { raw->flusher_loop(); });
  return v;
}

// The manifest (volume.json) is the volume's identity in object storage: its
// uuid and size. It is created once with a conditional put, so two daemons
// racing to create a volume cannot both win.
Status Volume::open_manifest() {
  auto logger = log::get("engine");
  std::vector<std::byte> raw;
  Status st = store_->get(kManifestKey, &raw);
  if (st.is(Status::Code::kNotFound)) {
    size_bytes_ = opts_.size_bytes != 0 ? opts_.size_bytes : kDefaultVolumeSize;
    uuid_ = new_uuid();
    nlohmann::json m = {{"format", 1},          {"uuid", uuid_},           {"size_bytes", size_bytes_},
                        {"block_size", kBlockSize}, {"created_unix_ms", now_unix_ms()}};
    PBD_RETURN_IF_ERROR(store_->put_if_absent(kManifestKey, to_bytes(m.dump(2) + "\n")).With("create volume"));
    logger->info("created volume uuid={} size_bytes={} storage={}", uuid_, size_bytes_, log::quote(store_->url()));
    return Status::OK();
  }
  PBD_RETURN_IF_ERROR(st.With("read " + std::string(kManifestKey)));
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
    uuid_ = m.at("uuid").get<std::string>();
    size_bytes_ = m.at("size_bytes").get<uint64_t>();
    if (m.at("format").get<int>() != 1) return Status::NotSupported("volume format is newer than this portalbd");
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("volume.json in ") + store_->url() + " is unreadable: " + e.what());
  }
  if (opts_.size_bytes != 0 && opts_.size_bytes != size_bytes_) {
    if (opts_.size_bytes < size_bytes_) {
      return Status::InvalidArgument("volume in " + store_->url() + " is " + human_size(size_bytes_) + " (" +
                                     std::to_string(size_bytes_) + " bytes); refusing to shrink it to " +
                                     human_size(opts_.size_bytes));
    }
    if (!opts_.grow) {
      return Status::InvalidArgument("volume in " + store_->url() + " is " + human_size(size_bytes_) +
                                     " but the configured size is " + human_size(opts_.size_bytes) +
                                     "; pass --grow to grow it");
    }
    logger->warn("growing volume uuid={} from_bytes={} to_bytes={}", uuid_, size_bytes_, opts_.size_bytes);
    size_bytes_ = opts_.size_bytes;
    m["size_bytes"] = size_bytes_;
    PBD_RETURN_IF_ERROR(store_->put(kManifestKey, to_bytes(m.dump(2) + "\n")).With("grow volume"));
  }
  logger->info("opened volume uuid={} size_bytes={}", uuid_, size_bytes_);
  return Status::OK();
}

Status Volume::open_index() {
  auto index = meta::Index::Open(opts_.index_path);
  if (!index.ok()) return index.status();
  index_ = std::move(*index);
  auto owner = index_->get_meta("volume_uuid");
  if (!owner.ok()) return owner.status();
  bool fresh = !owner->has_value();
  if (owner->has_value() && **owner != uuid_) {
    // The index belongs to another volume: it is only a cache, so rebuild.
    log::get("engine")->warn("index belongs to another volume, rebuilding index={} index_volume={} volume={}",
                             opts_.index_path, **owner, uuid_);
    PBD_RETURN_IF_ERROR(index_->reset());
    fresh = true;
  }
  PBD_RETURN_IF_ERROR(restore_checkpoint_if_fresh(fresh));
  PBD_RETURN_IF_ERROR(index_->set_meta("volume_uuid", uuid_));
  auto live = index_->live_layer();  // creates layer 1 and the live root on first use
  return live.ok() ? Status::OK() : live.status();
}

Result<SegmentFooter> Volume::read_segment_footer(const ObjectInfo& obj) {
  if (obj.size < kSegmentTrailerBytes) return Status::Corruption(obj.key + " is truncated");
  std::vector<std::byte> trailer, footer_bytes;
  PBD_RETURN_IF_ERROR(store_->get_range(obj.key, obj.size - kSegmentTrailerBytes, kSegmentTrailerBytes, &trailer));
  if (trailer.size() != kSegmentTrailerBytes) return Status::Corruption(obj.key + " is truncated");
  uint64_t footer_offset = 0;
  uint32_t footer_len = 0;
  PBD_RETURN_IF_ERROR(parse_segment_trailer(trailer, &footer_offset, &footer_len));
  if (footer_offset > obj.size - kSegmentTrailerBytes || footer_len != obj.size - kSegmentTrailerBytes - footer_offset) {
    return Status::Corruption(obj.key + ": footer position does not match the object size");
  }
  PBD_RETURN_IF_ERROR(store_->get_range(obj.key, footer_offset, footer_len, &footer_bytes));
  return parse_segment_footer(footer_bytes, footer_offset);
}

// Applies segments that are in storage but not in the index, in order, as
// long as they form a prefix of what was sealed (invariant 3 in volume.h).
// Sequence numbers may have holes (roots records and checkpoints take
// numbers too); a segment's after_seq says which write segment it needs.
Status Volume::replay_storage() {
  auto logger = log::get("engine");
  auto last = index_->last_seq();
  if (!last.ok()) return last.status();
  std::vector<ObjectInfo> objects;
  PBD_RETURN_IF_ERROR(store_->list("segments/", &objects).With("list segments"));
  // A checkpoint is taken with nothing buffered, so every write segment
  // sealed before it was committed; garbage collection deletes segments only
  // below the checkpoint it has just written. A missing segment at or below
  // the newest checkpoint was collected, not lost. Listed only when a segment
  // names a predecessor the index has not seen (rare: a lagging index or a
  // crash mid-window), so an ordinary start costs no extra LIST.
  std::optional<uint64_t> committed;
  auto committed_through = [&]() -> Result<uint64_t> {
    if (!committed) {
      std::vector<ObjectInfo> checkpoints;
      PBD_RETURN_IF_ERROR(store_->list("checkpoints/", &checkpoints).With("list checkpoints"));
      committed = *last;
      for (const auto& c : checkpoints) committed = std::max(*committed, parse_checkpoint_key(c.key));
    }
    return *committed;
  };
  uint64_t max_seq = *last;
  // Segments the index has not seen, in sequence order.
  std::vector<std::pair<uint64_t, ObjectInfo>> pending;
  for (const auto& obj : objects) {
    uint64_t seq = 0;
    if (!parse_segment_key(obj.key, &seq)) continue;
    max_seq = std::max(max_seq, seq);
    if (seq > *last) pending.emplace_back(seq, obj);
  }
  std::set<uint64_t> replayed;  // by this call
  for (size_t i = 0; i < pending.size(); ++i) {
    const auto& [seq, obj] = pending[i];
    // Up to kMaxUploadWindow uploads may have been in flight when a daemon
    // was killed. Any of them may be missing, or torn on a store that does
    // not make PUTs atomic (s3rver). None was committed, so no flush
    // covering them was answered, and dropping them loses nothing
    // acknowledged. Further back a bad or orphaned segment is corruption,
    // and the daemon refuses to guess.
    const bool in_upload_window = pending.size() - i <= kMaxUploadWindow;
    auto footer = read_segment_footer(obj);
    if (!footer.ok()) {
      if (in_upload_window && footer.status().is(Status::Code::kCorruption)) {
        logger->warn("dropping a torn segment among the last uploads object={} error={}", obj.key,
                     log::quote(footer.status().message()));
        PBD_RETURN_IF_ERROR(store_->remove(obj.key).With("drop torn segment"));
        continue;
      }
      return footer.status().With("segment " + obj.key);
    }
    if (footer->seq != seq) return Status::Corruption("segment " + obj.key + " claims sequence " + std::to_string(footer->seq));
    const uint64_t after = footer->after_seq;
    bool orphan = after > *last && !replayed.count(after);
    if (orphan) {
      auto through = committed_through();
      if (!through.ok()) return through.status();
      orphan = after > *through;
    }
    if (orphan) {
      // Stored while the segment before it was still uploading, which never
      // arrived: keeping it would give a state the disk was never in.
      if (!in_upload_window) {
        return Status::Corruption("segment " + obj.key + " follows " + segment_key(after) + ", which is missing");
      }
      logger->warn("dropping a segment sealed behind one that storage does not have object={} missing={}", obj.key,
                   segment_key(after));
      PBD_RETURN_IF_ERROR(store_->remove(obj.key).With("drop orphaned segment"));
      continue;
    }
    PBD_RETURN_IF_ERROR(index_->apply_segment(*footer, obj.size));
    replayed.insert(seq);
    ++replayed_segments_;
  }
  if (replayed_segments_ > 0) {
    logger->info("replayed segments from storage count={} last_seq={}", replayed_segments_, max_seq);
  }

  // Snapshots and layers: the newest roots record, when newer than the index's.
  std::vector<ObjectInfo> records;
  PBD_RETURN_IF_ERROR(store_->list("roots/", &records).With("list roots"));
  auto applied = index_->get_meta("roots_seq");
  if (!applied.ok()) return applied.status();
  const uint64_t applied_seq = applied->has_value() ? std::stoull(**applied) : 0;
  if (!records.empty()) {
    const ObjectInfo& newest = records.back();  // keys sort by sequence
    uint64_t seq = std::stoull(newest.key.substr(6, 16), nullptr, 16);
    max_seq = std::max(max_seq, seq);
    if (seq > applied_seq) {
      std::vector<std::byte> raw;
      PBD_RETURN_IF_ERROR(store_->get(newest.key, &raw).With("read " + newest.key));
      PBD_RETURN_IF_ERROR(apply_roots_record(raw).With(newest.key));
      PBD_RETURN_IF_ERROR(index_->set_meta("roots_seq", std::to_string(seq)));
      logger->info("restored snapshots from storage record={}", newest.key);
    }
  }
  next_seq_ = max_seq + 1;
  return Status::OK();
}

// Mirrors every layer of the index in memory, each with its committed extents.
Status Volume::load_layers() {
  auto layers = index_->list_layers();
  if (!layers.ok()) return layers.status();
  auto live = index_->live_layer();
  if (!live.ok()) return live.status();
  std::lock_guard lock(mu_);
  layers_.clear();
  for (const auto& rec : *layers) {  // ascending ids: parents come first
    auto layer = std::make_shared<Layer>();
    layer->id = rec.id;
    if (rec.parent != 0) {
      auto parent = layers_.find(rec.parent);
      if (parent == layers_.end()) return Status::Corruption("layer " + std::to_string(rec.id) + " has a missing parent");
      layer->parent = parent->second;
    }
    PBD_RETURN_IF_ERROR(index_->scan_layer(rec.id, [&](const meta::MappedExtent& x) {
      BlockSource src;
      src.state = x.state;
      src.seq = x.seq;
      src.frame = x.frame;
      src.block_in_frame = x.block_in_frame;
      layer->map.assign(x.lba, x.nblocks, src);
    }));
    layer->recount();
    layers_[rec.id] = layer;
    track_layer_locked(layer);
    next_layer_id_ = std::max(next_layer_id_, rec.id + 1);
  }
  auto it = layers_.find(*live);
  if (it == layers_.end()) return Status::Corruption("the live layer is missing from the index");
  live_ = it->second;
  return Status::OK();
}

}  // namespace portalbd
