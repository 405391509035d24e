// Damaged storage at open (docs/design.md, "What open() checks"): the checks
// that run once the index is caught up and the layers are in memory, and
// quarantine, the one way open() takes an object out of the volume's keys.
// Storage is the truth, so a check that finds committed data gone refuses to
// open, naming the objects; with VolumeOptions::repair it logs exactly what
// is lost, takes the loss, and opens.
#include <algorithm>
#include <map>
#include <set>

#include "src/engine/volume.h"
#include "src/log/log.h"
#include "src/util/clock.h"

namespace portalbd {
namespace {

constexpr const char* kRepairHint =
    "Start once with --repair to accept the loss (objects that cannot be read are moved under quarantine/, and the "
    "log says which layers and byte ranges are lost)";

// "layer 2: bytes 0+262144, 1048576+4096" for every extent of `refs`.
std::string describe_ranges(const std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>>& refs) {
  std::string out;
  for (const auto& [layer, ranges] : refs) {
    out += (out.empty() ? "" : "; ") + std::string("layer ") + std::to_string(layer) + ": bytes ";
    for (size_t i = 0; i < ranges.size(); ++i) {
      if (i == 16) {
        out += ", and " + std::to_string(ranges.size() - i) + " more ranges";
        break;
      }
      out += (i == 0 ? "" : ", ") + std::to_string(ranges[i].first * kBlockSize) + "+" +
             std::to_string(ranges[i].second * kBlockSize);
    }
  }
  return out;
}

}  // namespace

Status Volume::quarantine_object(const std::string& key, const std::string& why) {
  if (opts_.read_only) {
    // A reader never changes storage: what open() would set aside (the
    // writer's upload in flight, an old checkpoint) is left to the writer.
    log::get("engine")->info("read-only: not using an object, left in place object={} reason={}", key, log::quote(why));
    return Status::OK();
  }
  std::vector<std::byte> raw;
  Status st = store_->get_as_stored(key, &raw);             // unread: an object that fails decryption is kept too
  if (st.is(Status::Code::kNotFound)) return Status::OK();  // nothing left to keep
  PBD_RETURN_IF_ERROR(st.With("quarantine " + key));
  std::string dest = "quarantine/" + key;
  if (store_->head(dest).ok()) dest += "." + std::to_string(now_unix_ms());  // an earlier one of the same name
  if (opts_.lease) PBD_RETURN_IF_ERROR(opts_.lease->check().With("quarantine " + key));
  PBD_RETURN_IF_ERROR(store_->put_as_stored(dest, raw).With("quarantine " + key));
  PBD_RETURN_IF_ERROR(store_->remove(key).With("quarantine " + key));
  log::get("engine")->warn("quarantined an object open() cannot use object={} moved_to={} bytes={} reason={}", key,
                           dest, raw.size(), log::quote(why));
  return Status::OK();
}

Status Volume::check_stored_references() {
  std::map<uint64_t, uint64_t> stored = std::move(stored_segments_);
  stored_segments_.clear();
  if (opts_.ephemeral) return Status::OK();  // its layers hold buffers, not segments
  auto segments = index_->list_segments();
  if (!segments.ok()) return segments.status();
  std::map<uint64_t, uint64_t> recorded;  // seq -> object bytes, as the index has them
  for (const auto& s : *segments) recorded[s.seq] = s.bytes;
  // Every extent names a segment the index records (a commit records both
  // in one transaction; a segment's row goes only once nothing names it).
  // So when storage holds every recorded segment at its recorded size,
  // nothing reached can be damaged, and the extents stay unread: a volume
  // with millions opens as fast as an empty one.
  const bool all_stored = std::all_of(recorded.begin(), recorded.end(), [&](const auto& r) {
    auto it = stored.find(r.first);
    return it != stored.end() && it->second == r.second;
  });
  if (all_stored) return Status::OK();
  auto roots = index_->list_roots();
  if (!roots.ok()) return roots.status();

  // What is wrong with each segment a root reaches, and where it is reached.
  std::map<uint64_t, std::string> bad;
  std::map<uint64_t, std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>>> lost;  // seq -> layer -> ranges
  std::vector<std::shared_ptr<Layer>> reached;
  {
    MutexLock lock(&layers_.mu());
    std::set<uint64_t> seen;
    for (const auto& r : *roots) {
      for (auto l = layers_.find_locked(r.layer); l != nullptr; l = l->parent) {
        if (seen.insert(l->id).second) reached.push_back(l);
      }
    }
    // Read whole (open(): no writer yet); paged again once the index holds
    // what repair changes.
    for (const auto& layer : reached) PBD_RETURN_IF_ERROR(layers_.make_resident_locked(*layer));
    std::set<uint64_t> good;
    for (const auto& layer : reached) {
      for (const auto& [lba, node] : layer->map.entries()) {
        const BlockSource& src = node.value;
        if (src.state != ExtentState::kData || src.buffered() || good.count(src.seq)) continue;
        if (!bad.count(src.seq)) {
          auto it = stored.find(src.seq);
          auto rec = recorded.find(src.seq);
          if (it == stored.end()) {
            bad[src.seq] = "is missing";
          } else if (rec != recorded.end() && rec->second != it->second) {
            bad[src.seq] = "is " + std::to_string(it->second) + " bytes where the index recorded " +
                           std::to_string(rec->second) + " (torn or truncated)";
          } else {
            good.insert(src.seq);
            continue;
          }
        }
        lost[src.seq][layer->id].emplace_back(lba, node.length);
      }
    }
  }
  if (bad.empty()) {
    MutexLock lock(&layers_.mu());
    for (const auto& layer : reached) layers_.page_out_locked(*layer);
    return Status::OK();
  }

  std::string all;
  for (const auto& [seq, why] : bad) {
    all += (all.empty() ? "" : "; ") + segment_key(seq) + " " + why + ", reached by " + describe_ranges(lost[seq]);
  }
  if (!opts_.repair) {
    return Status::Corruption("storage of " + store_->url() + " is damaged: " + all +
                              ". Refusing to open the volume: those blocks would read as errors or zeros. " +
                              kRepairHint);
  }
  auto logger = log::get("engine");
  logger->error("repair: accepting damaged storage storage={} damage={}", log::quote(store_->url()), log::quote(all));
  repaired_ = true;
  // The lost blocks read as zeroes from now on, in every layer that had them
  // (zeroed, not unmapped: an older parent's data must not show through).
  std::set<uint64_t> changed;
  {
    MutexLock lock(&layers_.mu());
    for (const auto& [seq, by_layer] : lost) {
      for (const auto& [layer_id, ranges] : by_layer) {
        auto layer = layers_.find_locked(layer_id);
        if (!layer) continue;
        BlockSource zero;
        zero.state = ExtentState::kZero;
        for (const auto& [lba, n] : ranges) layer->assign(lba, n, zero);
        layers_.layer_changed_locked(*layer);
        changed.insert(layer_id);
      }
    }
  }
  for (uint64_t id : changed) {
    std::vector<meta::MappedExtent> rows;
    uint64_t parent = 0;
    {
      MutexLock lock(&layers_.mu());
      const Layer& layer = *layers_.find_locked(id);
      parent = layer.parent ? layer.parent->id : 0;
      rows = index_rows(layer.map);
    }
    PBD_RETURN_IF_ERROR(index_->replace_layer(id, parent, rows, {}).With("repair layer " + std::to_string(id)));
  }
  {
    MutexLock lock(&layers_.mu());
    for (const auto& layer : reached) layers_.page_out_locked(*layer);
  }
  for (const auto& [seq, why] : bad) {
    logger->error("repair: segment lost, its blocks now read as zeroes object={} problem={} lost={}", segment_key(seq),
                  log::quote(why), log::quote(describe_ranges(lost[seq])));
    if (stored.count(seq)) PBD_RETURN_IF_ERROR(quarantine_object(segment_key(seq), "segment " + why));
  }
  return Status::OK();
}

Status Volume::settle_repair() {
  PBD_RETURN_IF_ERROR(flush().With("repair: store the roots"));  // roots_dirty_ when a roots record was lost
  auto ckpt = checkpoint();
  if (!ckpt.ok()) return ckpt.status().With("repair: store a checkpoint of the accepted state");
  log::get("engine")->warn("repair: the accepted state is stored; later starts open it without --repair checkpoint={}",
                           checkpoint_key(*ckpt));
  return Status::OK();
}

Status Volume::check_size_covers_data() {
  uint64_t end = 0, layer_id = 0;
  // Paged layers: their rows' last data extents, all in one statement.
  std::map<uint64_t, uint64_t> row_ends;
  if (!opts_.ephemeral) {
    auto ends = index_->last_data_ends();
    if (!ends.ok()) return ends.status();
    row_ends = std::move(*ends);
  }
  {
    MutexLock lock(&layers_.mu());
    for (const auto& [id, layer] : layers_.by_id_locked()) {
      if (layer->paged()) {
        auto last = row_ends.find(id);
        if (last != row_ends.end() && last->second * kBlockSize > end) {
          end = last->second * kBlockSize;
          layer_id = id;
        }
        continue;
      }
      const auto& entries = layer->map.entries();
      for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
        if (it->second.value.state != ExtentState::kData) continue;
        const uint64_t e = (it->first + it->second.length) * kBlockSize;
        if (e > end) {
          end = e;
          layer_id = id;
        }
        break;
      }
    }
  }
  if (end <= size_bytes_) return Status::OK();
  const uint64_t gib = (end + (1ull << 30) - 1) >> 30;
  return Status::Corruption("volume.json in " + store_->url() + " says size_bytes=" + std::to_string(size_bytes_) +
                            ", but layer " + std::to_string(layer_id) + " holds data up to byte " +
                            std::to_string(end) +
                            ": the volume never shrinks, so volume.json is damaged. Put the size back in volume.json, "
                            "or start with --disk-size-gb " +
                            std::to_string(gib) + " --grow");
}

}  // namespace portalbd
