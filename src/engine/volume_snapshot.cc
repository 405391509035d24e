// Snapshots: O(1) create, restore and delete over the layer chain, and the
// roots record that keeps layers and snapshots in object storage.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>

#include <nlohmann/json.hpp>

#include "src/util/clock.h"
#include "src/engine/snapshot_device.h"
#include "src/engine/uuid.h"
#include "src/engine/volume.h"
#include "src/log/log.h"

namespace portalbd {
namespace {

// Reopens the gate when the cut is over, whatever path leaves the scope.
class ClosedGate {
 public:
  explicit ClosedGate(CutGate& g) : g_(g) { g_.close(); }
  ~ClosedGate() { reopen(); }
  void reopen() {
    if (closed_) g_.open();
    closed_ = false;
  }

 private:
  CutGate& g_;
  bool closed_ = true;
};

std::string roots_key(uint64_t seq) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "roots/%016llx.json", static_cast<unsigned long long>(seq));
  return buf;
}

}  // namespace

Status validate_snapshot_name(const std::string& name) {
  if (name.empty() || name.size() > 128) {
    return Status::InvalidArgument("snapshot name must be 1-128 characters, got " + std::to_string(name.size()));
  }
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    if (!ok) {
      return Status::InvalidArgument("snapshot name '" + name + "' has a character outside [A-Za-z0-9._-]");
    }
  }
  if (name == "live" || name == "." || name == "..") {
    return Status::InvalidArgument("snapshot name '" + name + "' is reserved");
  }
  return Status::OK();
}

// Root changes (create, restore, delete) follow one order:
//   R1. The new roots record is PUT to storage first, built from the index's
//       roots with the change applied; a failed PUT changes nothing.
//   R2. Then the change commits to the index (and roots_seq with it); then
//       the in-memory layers follow.
// So storage never lags the index on roots: a crash anywhere leaves the old
// state dir and a rebuild from storage alone with the same roots (open()
// applies a roots record newer than the index's). A commit that fails after
// its record is stored leaves storage ahead; roots_dirty_ makes the next
// flush store the index's roots again before it answers.
Result<Volume::RootsState> Volume::index_roots() {
  RootsState state;
  auto layers = index_->list_layers();
  if (!layers.ok()) return layers.status();
  auto roots = index_->list_roots();
  if (!roots.ok()) return roots.status();
  state.layers = std::move(*layers);
  state.roots = std::move(*roots);
  return state;
}

Result<uint64_t> Volume::store_roots_record(const RootsState& state) {
  if (needs_checkpoint_) {
    // Segments may still name layers GC merged away; a checkpoint must cover
    // that before a roots record stops naming them.
    auto ckpt = checkpointer_.take_locked();
    if (!ckpt.ok()) return ckpt.status();
  }
  nlohmann::json j;
  j["format"] = 1;
  j["volume_uuid"] = uuid_;
  j["layers"] = nlohmann::json::array();
  for (const auto& l : state.layers) {
    j["layers"].push_back({{"id", l.id}, {"parent", l.parent}, {"created_unix_ms", l.created_unix_ms}});
  }
  j["roots"] = nlohmann::json::array();
  for (const auto& r : state.roots) {
    j["roots"].push_back({{"name", r.name},
                          {"layer", r.layer},
                          {"kind", r.kind},
                          {"uuid", r.uuid},
                          {"created_unix_ms", r.created_unix_ms}});
  }
  uint64_t seq;
  {
    MutexLock lock(&layers_.mu());
    seq = pipeline_.take_seqs_locked(1);
  }
  j["seq"] = seq;
  const std::string text = j.dump(1) + "\n";
  auto* p = reinterpret_cast<const std::byte*>(text.data());
  if (opts_.lease) PBD_RETURN_IF_ERROR(opts_.lease->check().With("store " + roots_key(seq)));
  PBD_RETURN_IF_ERROR(store_->put(roots_key(seq), std::span<const std::byte>(p, text.size())));
  // Confirmed after the PUT as any segment (U7): a command answered OK names
  // a record whoever holds the volume next has listed.
  PBD_RETURN_IF_ERROR(pipeline_.confirm_writer("confirm " + roots_key(seq)));
  return seq;
}

Status Volume::write_roots_record() {
  pipeline_.set_roots_dirty_locked(true);  // until this PUT lands
  auto state = index_roots();
  if (!state.ok()) return state.status();
  auto seq = store_roots_record(*state);
  if (!seq.ok()) return seq.status();
  PBD_RETURN_IF_ERROR(index_->set_meta("roots_seq", std::to_string(*seq)));
  pipeline_.set_roots_dirty_locked(false);
  return Status::OK();
}

// R2 for a change whose record `seq` is stored: commits it to the index.
Status Volume::commit_root_change(uint64_t seq, const std::function<Status()>& change) {
  Status st = change();
  if (st.ok()) st = index_->set_meta("roots_seq", std::to_string(seq));
  if (!st.ok()) pipeline_.set_roots_dirty_locked(true);  // storage is ahead of the index: store the index's roots again
  return st;
}

Status Volume::apply_roots_record(const std::vector<std::byte>& raw) {
  std::vector<meta::LayerRecord> layers;
  std::vector<meta::RootRecord> roots;
  try {
    auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
    if (j.at("format").get<int>() != 1) return Status::NotSupported("roots record format is newer than this portalbd");
    for (const auto& l : j.at("layers")) {
      layers.push_back({l.at("id").get<uint64_t>(), l.at("parent").get<uint64_t>(), l.at("created_unix_ms").get<int64_t>()});
    }
    for (const auto& r : j.at("roots")) {
      roots.push_back({r.at("name").get<std::string>(), r.at("layer").get<uint64_t>(), r.at("kind").get<std::string>(),
                       r.at("uuid").get<std::string>(), r.at("created_unix_ms").get<int64_t>()});
    }
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("unreadable roots record: ") + e.what());
  }
  return index_->replace_roots(layers, roots);
}

Status Volume::checkpoint_if_needed() {
  FlushPipeline::UploadLock flush_lock(pipeline_);
  if (!needs_checkpoint_) return Status::OK();
  auto ckpt = checkpointer_.take_locked();
  return ckpt.ok() ? Status::OK() : ckpt.status();
}

Result<SnapshotInfo> Volume::create_snapshot(const std::string& name) {
  PBD_RETURN_IF_ERROR(validate_snapshot_name(name));
  if (find_snapshot(name).ok()) return Status::AlreadyExists("a snapshot named '" + name + "' already exists");
  // A checkpoint GC owes storage runs before the cut, not while writers wait.
  PBD_RETURN_IF_ERROR(checkpoint_if_needed());
  const int64_t now = now_unix_ms();
  ClosedGate cut(gate_);  // no write is half-way through from here on
  FlushPipeline::UploadLock flush_lock(pipeline_);
  if (journal_) PBD_RETURN_IF_ERROR(upload_everything_locked().With("upload the journaled writes before the cut"));
  uint64_t old_id;
  {
    MutexLock lock(&layers_.mu());
    old_id = layers_.live_locked()->id;
  }
  const uint64_t new_id = next_layer_id_++;
  meta::RootRecord rec{name, old_id, "snapshot", new_uuid(), now};
  auto state = index_roots();
  if (!state.ok()) return state.status();
  state->layers.push_back({new_id, old_id, now});
  for (auto& r : state->roots) {
    if (r.name == name) return Status::AlreadyExists("a snapshot named '" + name + "' already exists");
    if (r.kind == "live") r.layer = new_id;
  }
  state->roots.push_back(rec);
  auto seq = store_roots_record(*state);  // R1
  if (!seq.ok()) return seq.status().With("record snapshot '" + name + "' in object storage");
  PBD_RETURN_IF_ERROR(commit_root_change(*seq, [&] { return index_->create_snapshot(rec, new_id, now); }));
  uint64_t through;
  {
    MutexLock lock(&layers_.mu());
    pipeline_.seal_active_locked();  // everything answered so far belongs to the snapshot
    through = pipeline_.next_seq_locked() - 1;
    layers_.start_live_locked(new_id, layers_.live_locked());
  }
  cut.reopen();  // writers continue into the new live layer while we upload
  Status st = pipeline_.upload_through(through);
  if (flattener_) flattener_->kick();  // the frozen layer, committed, can be folded into the base
  if (!st.ok()) {
    return Status(st.code(), "snapshot '" + name + "' was taken but its data is not yet durable in object storage: " +
                                 st.message());
  }
  log::get("engine")->info("snapshot created name={} id={} layer={}", name, rec.uuid, old_id);
  return find_snapshot(name);
}

Result<RestoreResult> Volume::restore_snapshot(const std::string& name, bool discard_current) {
  auto target = find_snapshot(name);
  if (!target.ok()) return target.status();
  PBD_RETURN_IF_ERROR(checkpoint_if_needed());
  const int64_t now = now_unix_ms();
  ClosedGate cut(gate_);
  FlushPipeline::UploadLock flush_lock(pipeline_);
  if (journal_) PBD_RETURN_IF_ERROR(upload_everything_locked().With("upload the journaled writes before the cut"));
  RestoreResult result;
  result.restored = name;
  std::optional<meta::RootRecord> keep;
  if (!discard_current) {
    std::string base = "pre-restore-" + compact_utc(now);
    std::string candidate = base;
    for (int i = 2; find_snapshot(candidate).ok(); ++i) candidate = base + "-" + std::to_string(i);
    MutexLock lock(&layers_.mu());
    keep = meta::RootRecord{candidate, layers_.live_locked()->id, "snapshot", new_uuid(), now};
    result.pre_restore = candidate;
  }
  {
    MutexLock lock(&layers_.mu());
    if (!layers_.find_locked(target->layer)) return Status::Corruption("snapshot layer is missing in memory");
  }
  const uint64_t new_id = next_layer_id_++;
  auto state = index_roots();
  if (!state.ok()) return state.status();
  state->layers.push_back({new_id, target->layer, now});
  for (auto& r : state->roots) {
    if (r.kind == "live") r.layer = new_id;
  }
  if (keep) state->roots.push_back(*keep);
  auto seq = store_roots_record(*state);  // R1
  if (!seq.ok()) return seq.status().With("record the restore of '" + name + "' in object storage");
  PBD_RETURN_IF_ERROR(
      commit_root_change(*seq, [&] { return index_->restore_snapshot(target->layer, new_id, keep, now); }));
  uint64_t through;
  {
    MutexLock lock(&layers_.mu());
    pipeline_.seal_active_locked();  // the replaced state, complete, goes to the old layer
    through = pipeline_.next_seq_locked() - 1;
    layers_.start_live_locked(new_id, layers_.find_locked(target->layer));
  }
  cut.reopen();
  Status st = pipeline_.upload_through(through);
  if (flattener_) flattener_->kick();  // a new chain: the base may need rebuilding
  if (!st.ok()) {
    return Status(st.code(), "restored '" + name + "' but the replaced state is not yet durable in object storage: " +
                                 st.message());
  }
  log::get("engine")->info("snapshot restored name={} pre_restore={} new_layer={}", name,
                           result.pre_restore.empty() ? "none" : result.pre_restore, new_id);
  return result;
}

Status Volume::delete_snapshot(const std::string& name) {
  PBD_RETURN_IF_ERROR(validate_snapshot_name(name));
  FlushPipeline::UploadLock flush_lock(pipeline_);
  auto state = index_roots();
  if (!state.ok()) return state.status();
  const size_t before = state->roots.size();
  std::erase_if(state->roots, [&](const meta::RootRecord& r) { return r.kind == "snapshot" && r.name == name; });
  if (state->roots.size() == before) return Status::NotFound("no snapshot named '" + name + "'");
  auto seq = store_roots_record(*state);  // R1
  if (!seq.ok()) return seq.status().With("record deletion of '" + name + "' in object storage");
  PBD_RETURN_IF_ERROR(commit_root_change(*seq, [&] { return index_->delete_snapshot(name); }));
  log::get("engine")->info("snapshot deleted name={}", name);
  return Status::OK();
}

Result<std::vector<SnapshotInfo>> Volume::list_snapshots() {
  auto roots = index_->list_roots();
  if (!roots.ok()) return roots.status();
  std::vector<SnapshotInfo> out;
  MutexLock lock(&layers_.mu());
  for (const auto& r : *roots) {
    if (r.kind != "snapshot") continue;
    SnapshotInfo info{r.name, r.uuid, r.created_unix_ms, r.layer, 0};
    if (auto layer = layers_.find_locked(r.layer)) info.written_bytes = layer->data_bytes;
    out.push_back(std::move(info));
  }
  return out;
}

Result<SnapshotInfo> Volume::find_snapshot(const std::string& name) {
  auto all = list_snapshots();
  if (!all.ok()) return all.status();
  for (auto& s : *all) {
    if (s.name == name) return s;
  }
  return Status::NotFound("no snapshot named '" + name + "'");
}

Result<std::shared_ptr<BlockDevice>> Volume::open_snapshot(const std::string& name) {
  auto snap = find_snapshot(name);
  if (!snap.ok()) return snap.status();
  MutexLock lock(&layers_.mu());
  auto layer = layers_.find_locked(snap->layer);
  if (!layer) return Status::Corruption("snapshot '" + name + "' has no layer in memory");
  return std::shared_ptr<BlockDevice>(std::make_shared<SnapshotDevice>(shared_from_this(), std::move(layer)));
}

}  // namespace portalbd
