// Volume::Open: the volume manifest, the index, and replay of segments that
// the index has not seen yet (after a crash between PUT and commit, or with a
// fresh state directory).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>

#include "src/engine/replay_plan.h"
#include "src/engine/uuid.h"
#include "src/engine/volume.h"
#include "src/log/log.h"
#include "src/util/clock.h"

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

// The manifest (volume.json) is the volume's identity in object storage: its
// uuid and size. It is created once with a conditional put, so two daemons
// racing to create a volume cannot both win.
Status Volume::open_manifest() {
  auto logger = log::get("engine");
  std::vector<std::byte> raw;
  Status st = store_->get(kManifestKey, &raw);
  if (st.is(Status::Code::kNotFound) && opts_.read_only) {
    return Status::NotFound("no " + std::string(kManifestKey) + " in " + store_->url() +
                            ": there is no volume to read (a read-only reader never creates one)");
  }
  if (st.is(Status::Code::kNotFound)) {
    PBD_RETURN_IF_ERROR(check_prefix_is_empty());
    size_bytes_ = opts_.size_bytes != 0 ? opts_.size_bytes : kDefaultVolumeSize;
    uuid_ = new_uuid();
    nlohmann::json m = {{"format", 1},
                        {"uuid", uuid_},
                        {"size_bytes", size_bytes_},
                        {"block_size", kBlockSize},
                        {"created_unix_ms", now_unix_ms()}};
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
  if (opts_.size_bytes != 0 && opts_.size_bytes != size_bytes_ && !opts_.read_only) {
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

// A volume's objects with no volume.json: the manifest is lost or damaged.
// Creating a new volume there would give the data a new identity that no
// later start matches, so refuse and say what is there.
Status Volume::check_prefix_is_empty() {
  std::vector<ObjectInfo> all;
  PBD_RETURN_IF_ERROR(store_->list("", &all).With("list " + store_->url()));
  std::map<std::string, uint64_t> found;  // what, how many
  for (const auto& obj : all) {
    uint64_t seq = 0;
    if (obj.key.starts_with("lock/")) continue;            // the writer lease, claimed before open()
    if (obj.key.starts_with(kStoreProbePrefix)) continue;  // the store's own, not the volume's
    if (parse_segment_key(obj.key, &seq)) {
      found["segments"]++;
    } else if (parse_roots_record_key(obj.key) != 0) {
      found["roots records"]++;
    } else if (parse_checkpoint_key(obj.key) != 0) {
      found["checkpoints"]++;
    } else if (obj.key.starts_with("quarantine/")) {
      found["quarantined objects"]++;
    } else {
      found["other objects"]++;
    }
  }
  if (found.empty()) return Status::OK();
  std::string what;
  for (const char* kind : {"segments", "roots records", "checkpoints", "quarantined objects", "other objects"}) {
    if (found.count(kind)) what += (what.empty() ? "" : ", ") + std::to_string(found[kind]) + " " + kind;
  }
  return Status::Corruption("no " + std::string(kManifestKey) + " in " + store_->url() + ", but it holds " + what +
                            ": a volume whose " + kManifestKey +
                            " is lost or damaged. Refusing to create a new volume over its data; put " + kManifestKey +
                            " back (its uuid is in every roots record and checkpoint), or use an empty location");
}

// The index is a cache of storage: one that SQLite cannot read is moved aside
// (index.sqlite.corrupt-<UTC time>, with its -wal and -shm) and rebuilt from
// storage, with one log line. Errors that say nothing about the file (a full
// disk, a lock) and an index from a newer portalbd are reported instead.
Result<std::unique_ptr<meta::Index>> Volume::open_index_or_move_aside() {
  auto probe = [&]() -> Result<std::unique_ptr<meta::Index>> {
    auto index = meta::Index::Open(opts_.index_path);
    if (!index.ok()) return index.status();
    auto owner = (*index)->get_meta("volume_uuid");
    if (!owner.ok()) return owner.status();
    auto last = (*index)->last_seq();
    if (!last.ok()) return last.status();
    return index;
  };
  auto index = probe();
  if (index.ok() || opts_.index_path == kInMemoryIndex || !index.status().is(Status::Code::kIOError)) return index;
  const std::string& msg = index.status().message();
  for (const char* transient : {"full", "locked", "busy"}) {
    if (msg.find(transient) != std::string::npos) return index;
  }
  const std::string aside = opts_.index_path + ".corrupt-" + compact_utc(now_unix_ms());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    if (!std::filesystem::exists(opts_.index_path + suffix, ec)) continue;
    std::filesystem::rename(opts_.index_path + suffix, aside + suffix, ec);
    if (ec) {
      return Status::IOError(msg + "; and moving it aside to " + aside + suffix + " failed: " + ec.message());
    }
  }
  log::get("engine")->warn(
      "index is unreadable, moved it aside and rebuilding it from storage index={} moved_to={} error={}",
      opts_.index_path, aside, log::quote(msg));
  return probe();
}

Status Volume::open_index() {
  auto index = open_index_or_move_aside();
  if (!index.ok()) return index.status();
  index_ = std::move(*index);
  auto owner = index_->get_meta("volume_uuid");
  if (!owner.ok()) return owner.status();
  bool fresh = !owner->has_value();
  if (owner->has_value() && opts_.read_only) {
    // A reader's index is a private cache of storage another daemon
    // changes: rebuilt from storage at every open, never trusted.
    PBD_RETURN_IF_ERROR(index_->reset());
    fresh = true;
  } else if (owner->has_value() && **owner != uuid_) {
    // The index belongs to another volume: it is only a cache, so rebuild.
    log::get("engine")->warn("index belongs to another volume, rebuilding index={} index_volume={} volume={}",
                             opts_.index_path, **owner, uuid_);
    PBD_RETURN_IF_ERROR(index_->reset());
    fresh = true;
  }
  PBD_RETURN_IF_ERROR(checkpointer_.restore_if_fresh(fresh));
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
  if (footer_offset > obj.size - kSegmentTrailerBytes ||
      footer_len != obj.size - kSegmentTrailerBytes - footer_offset) {
    return Status::Corruption(obj.key + ": footer position does not match the object size");
  }
  PBD_RETURN_IF_ERROR(store_->get_range(obj.key, footer_offset, footer_len, &footer_bytes));
  return parse_segment_footer(footer_bytes, footer_offset);
}

// True when no segment or checkpoint in storage has a sequence number above
// `seq` (stored_segments_ holds the segments listed by replay_storage()).
Result<bool> Volume::is_newest_object(uint64_t seq) {
  if (!stored_segments_.empty() && stored_segments_.rbegin()->first > seq) return false;
  std::vector<ObjectInfo> checkpoints;
  PBD_RETURN_IF_ERROR(store_->list("checkpoints/", &checkpoints).With("list checkpoints"));
  for (const auto& c : checkpoints) {
    if (parse_checkpoint_key(c.key) > seq) return false;
  }
  return true;
}

// Applies segments that are in storage but not in the index, in order, and
// the newest roots record, refusing damaged storage (replay_plan.h says which
// losses are a crash state and which are damage). Nothing is written,
// quarantined or applied from a segment before every check has passed, so a
// refusal leaves storage as it found it. With opts_.repair the damage is
// logged and accepted instead: what cannot be used is quarantined.
Status Volume::replay_storage() {
  auto logger = log::get("engine");
  auto last = index_->last_seq();
  if (!last.ok()) return last.status();
  std::vector<ObjectInfo> objects;
  PBD_RETURN_IF_ERROR(store_->list("segments/", &objects).With("list segments"));
  uint64_t max_seq = *last;
  // Segments the index has not seen, in sequence order, with their footers.
  std::vector<PendingSegment> pending;
  stored_segments_.clear();
  // The plan needs only each footer's header; the entries are kept for the
  // apply below while they fit this budget, and read again past it, so a
  // long replay (no checkpoint yet) holds no more than this of them.
  constexpr uint64_t kKeptFooterBytes = 64ull << 20;
  uint64_t kept_footer_bytes = 0;
  for (const auto& obj : objects) {
    uint64_t seq = 0;
    if (!parse_segment_key(obj.key, &seq)) continue;
    stored_segments_[seq] = obj.size;
    max_seq = std::max(max_seq, seq);
    if (seq <= *last) continue;
    PendingSegment p;
    p.seq = seq;
    p.key = obj.key;
    p.size = obj.size;
    auto footer = read_segment_footer(obj);
    if (footer.ok()) {
      p.footer = std::move(*footer);
      kept_footer_bytes += (p.footer->entries.size() + p.footer->frames.size()) * 32;
      if (kept_footer_bytes > kKeptFooterBytes) {
        p.footer->entries = {};
        p.footer->frames = {};
        p.entries_dropped = true;
      }
    } else if (footer.status().is(Status::Code::kCorruption)) {
      p.error = footer.status();
    } else {
      return footer.status().With("segment " + obj.key);  // storage trouble, not damage: try again later
    }
    pending.push_back(std::move(p));
  }
  // A checkpoint is taken with nothing buffered, so every write segment
  // sealed before it was committed; garbage collection deletes segments only
  // below the checkpoint it has just written. A segment missing at or below
  // the newest checkpoint was collected, not lost. Listed only when there is
  // something to replay, so an ordinary start costs no extra LIST.
  uint64_t committed_through = *last;
  if (!pending.empty()) {
    std::vector<ObjectInfo> checkpoints;
    PBD_RETURN_IF_ERROR(store_->list("checkpoints/", &checkpoints).With("list checkpoints"));
    for (const auto& c : checkpoints) committed_through = std::max(committed_through, parse_checkpoint_key(c.key));
  }
  ReplayPlan plan = plan_replay(pending, *last, committed_through, kMaxUploadWindow);
  std::vector<std::string> damage;
  if (plan.damaged()) damage.push_back(plan.describe_damage());

  // Snapshots and layers: the newest roots record, when newer than the
  // index's. Root changes store their record before the index commits them
  // (volume_snapshot.cc), so storage never holds less than the index.
  std::vector<ObjectInfo> records;
  PBD_RETURN_IF_ERROR(store_->list("roots/", &records).With("list roots"));
  std::erase_if(records, [](const ObjectInfo& r) { return parse_roots_record_key(r.key) == 0; });
  auto applied = index_->get_meta("roots_seq");
  if (!applied.ok()) return applied.status();
  const uint64_t applied_seq = applied->has_value() ? std::stoull(**applied) : 0;
  const uint64_t newest_record =
      records.empty() ? 0 : parse_roots_record_key(records.back().key);  // keys sort by sequence
  max_seq = std::max(max_seq, newest_record);
  if (newest_record < applied_seq) {
    damage.push_back("the index holds roots record " + roots_record_key(applied_seq) + ", but storage's newest is " +
                     (records.empty() ? std::string("none") : records.back().key) +
                     ": a roots record (snapshots and layers) is missing");
  }
  bool roots_missing = newest_record < applied_seq;
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    const uint64_t seq = parse_roots_record_key(it->key);
    if (seq <= applied_seq) break;
    std::vector<std::byte> raw;
    // A damaged object is kCorruption from the store itself when the volume
    // is encrypted (it fails authentication), from the parse when it is not:
    // both are judged below alike.
    Status st = store_->get(it->key, &raw);
    if (!st.ok() && !st.is(Status::Code::kCorruption)) return st.With("read " + it->key);
    if (st.ok()) st = apply_roots_record(raw);
    if (st.ok()) {
      PBD_RETURN_IF_ERROR(index_->set_meta("roots_seq", std::to_string(seq)));
      logger->info("restored snapshots from storage record={}", it->key);
      break;
    }
    if (!st.is(Status::Code::kCorruption)) return st.With(it->key);
    // A reader (read_only) cannot tell a writer's cut-short PUT from a record
    // whose chain the writer pruned while it read it: it refuses, and its
    // caller loads again from a fresh listing (snapshot_reader.h).
    if (it == records.rbegin() && !opts_.read_only) {
      // A root change PUTs its record before anything else happens to the
      // volume (R1 in volume_snapshot.cc): a torn record that is the newest
      // object in storage is the PUT a crash cut short (s3rver keeps the part
      // it received), whose change was never committed or answered. It is
      // the uncommitted tail, like a torn last segment: quarantined, and the
      // record before it stands.
      auto torn_tail = is_newest_object(seq);
      if (!torn_tail.ok()) return torn_tail.status();
      if (*torn_tail) {
        logger->warn(
            "a roots record whose upload a crash cut short is set aside; the one before it stands object={} "
            "error={}",
            it->key, log::quote(st.message()));
        PBD_RETURN_IF_ERROR(quarantine_object(it->key, "torn roots record at the tail"));
        continue;
      }
    }
    damage.push_back(it->key + " is unreadable (" + st.message() + ")");
    if (!opts_.repair) break;
    // Repair: an older record, and the layers it does not know are dealt
    // with below like any other.
    roots_missing = true;
    PBD_RETURN_IF_ERROR(quarantine_object(it->key, "unreadable roots record"));
  }

  // Every segment's layer must be one the roots know: a record that creates
  // a layer is stored before any segment of it. One that names a layer
  // nobody knows means a roots record is missing, and with it a snapshot or
  // a restore: replaying it would attach its writes to nothing (and GC would
  // then delete them).
  auto layers = index_->list_layers();
  if (!layers.ok()) return layers.status();
  std::set<uint64_t> known_layers;
  for (const auto& l : *layers) known_layers.insert(l.id);
  if (known_layers.empty()) known_layers.insert(1);  // a new index: live_layer() makes layer 1
  std::set<size_t> unknown_layer;
  for (size_t i = 0; i < pending.size(); ++i) {
    const auto& p = pending[i];
    if (plan.decisions[i].action != ReplayPlan::Action::kApply || known_layers.count(p.footer->layer)) continue;
    unknown_layer.insert(i);
    damage.push_back(p.key + " holds writes to layer " + std::to_string(p.footer->layer) +
                     ", which neither the index nor storage's newest roots record knows: a roots record is missing");
  }

  if (!damage.empty()) {
    std::string all;
    for (const auto& d : damage) all += (all.empty() ? "" : "; ") + d;
    if (!opts_.repair) {
      return Status::Corruption("storage of " + store_->url() + " is damaged: " + all +
                                ". Refusing to open the volume: it would serve older data or zeros in place of "
                                "committed writes. Start once with --repair to accept the loss (objects that cannot be "
                                "read are moved under quarantine/, and the log says what is lost)");
    }
    logger->error("repair: accepting damaged storage storage={} damage={}", log::quote(store_->url()), log::quote(all));
    repaired_ = true;
    for (const auto& m : plan.missing) {
      logger->error("repair: segment lost, its writes are gone object={} named_by={}", segment_key(m.seq),
                    segment_key(m.named_by));
    }
  }
  if (roots_missing && opts_.repair) {
    pipeline_.mark_roots_dirty();  // the first flush stores the roots as the index now has them
  }

  for (size_t i = 0; i < pending.size(); ++i) {
    auto& p = pending[i];
    const auto& d = plan.decisions[i];
    if (p.entries_dropped && d.action != ReplayPlan::Action::kDropTail) {
      auto footer = read_segment_footer({p.key, p.size});
      if (!footer.ok()) return footer.status().With("segment " + p.key + ", read again");
      p.footer = std::move(*footer);
      p.entries_dropped = false;
    }
    if (d.action == ReplayPlan::Action::kDropTail) {
      logger->warn("dropping a segment of a crash's uncommitted tail object={} reason={}", p.key, log::quote(d.why));
      PBD_RETURN_IF_ERROR(quarantine_object(p.key, d.why));
      stored_segments_.erase(p.seq);
      continue;
    }
    if (d.action == ReplayPlan::Action::kDamaged || unknown_layer.count(i)) {  // only with opts_.repair
      const std::string why = d.action == ReplayPlan::Action::kDamaged ? d.why : "its layer is unknown";
      logger->error("repair: segment lost, its writes are gone object={} reason={} writes={}", p.key, log::quote(why),
                    p.footer ? describe_writes(*p.footer) : std::string("unknown (its footer is unreadable)"));
      PBD_RETURN_IF_ERROR(quarantine_object(p.key, why));
      stored_segments_.erase(p.seq);
      continue;
    }
    PBD_RETURN_IF_ERROR(index_->apply_segment(*p.footer, p.size));
    ++replayed_segments_;
  }
  if (replayed_segments_ > 0) {
    logger->info("replayed segments from storage count={} last_seq={}", replayed_segments_, max_seq);
  }
  uint64_t max_wseq = 0;
  if (auto v = index_->get_meta("max_wseq"); v.ok() && v->has_value()) max_wseq = std::stoull(**v);
  // The next write segment names the newest one storage keeps.
  MutexLock lock(&layers_.mu());
  pipeline_.set_sequence_locked(max_seq + 1, stored_segments_.empty() ? 0 : stored_segments_.rbegin()->first, max_wseq);
  return Status::OK();
}

// Mirrors every layer of the index in memory: paged (nothing loaded yet), or
// for an ephemeral volume with its committed extents.
Status Volume::load_layers() {
  auto layers = index_->list_layers();
  if (!layers.ok()) return layers.status();
  auto live = index_->live_layer();
  if (!live.ok()) return live.status();
  {
    FlushPipeline::UploadLock upload_lock(pipeline_);  // open(): nobody else uploads yet
    for (const auto& rec : *layers) next_layer_id_ = std::max(next_layer_id_, rec.id + 1);
  }
  MutexLock lock(&layers_.mu());
  // Paged from the index, but for an ephemeral volume: its maps hold buffers.
  PBD_RETURN_IF_ERROR(layers_.set_index_locked(opts_.ephemeral ? nullptr : index_.get(), opts_.index_cache_bytes));
  return layers_.load_locked(*layers, *live, [&](Layer& layer) {
    return index_->scan_layer(layer.id, [&](const meta::MappedExtent& x) {
      layer.map.append(x.lba, x.nblocks, source_of(x));  // the index returns them by lba
    });
  });
}

}  // namespace portalbd
