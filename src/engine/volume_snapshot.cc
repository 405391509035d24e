// Snapshots: O(1) create, restore and delete over the layer chain, and the
// roots record that keeps layers and snapshots in object storage.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>

#include "src/engine/snapshot_device.h"
#include "src/engine/uuid.h"
#include "src/engine/volume.h"
#include "src/log/log.h"
#include "src/util/clock.h"

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

// A chain of deltas is cut by a whole record after this many: a rebuild
// reads at most this many records, and storage keeps at most two chains.
constexpr uint64_t kMaxRootsDeltas = 64;

nlohmann::json layer_json(const meta::LayerRecord& l) {
  return {{"id", l.id}, {"parent", l.parent}, {"created_unix_ms", l.created_unix_ms}};
}

nlohmann::json root_json(const meta::RootRecord& r) {
  return {
      {"name", r.name}, {"layer", r.layer}, {"kind", r.kind}, {"uuid", r.uuid}, {"created_unix_ms", r.created_unix_ms}};
}

meta::LayerRecord layer_of(const nlohmann::json& l) {
  return {l.at("id").get<uint64_t>(), l.at("parent").get<uint64_t>(), l.at("created_unix_ms").get<int64_t>()};
}

meta::RootRecord root_of(const nlohmann::json& r) {
  return {r.at("name").get<std::string>(), r.at("layer").get<uint64_t>(), r.at("kind").get<std::string>(),
          r.at("uuid").get<std::string>(), r.at("created_unix_ms").get<int64_t>()};
}

}  // namespace

Status validate_snapshot_name(const std::string& name) {
  if (name.empty() || name.size() > 128) {
    return Status::InvalidArgument("snapshot name must be 1-128 characters, got " + std::to_string(name.size()));
  }
  for (char c : name) {
    bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
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
  for (const auto& l : state.layers) j["layers"].push_back(layer_json(l));
  j["roots"] = nlohmann::json::array();
  for (const auto& r : state.roots) j["roots"].push_back(root_json(r));
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
  prune_roots_records(seq);
  roots_chain_base_ = seq;
  roots_chain_len_ = 0;
  roots_chain_last_ = seq;
  return seq;
}

void Volume::apply_delta(const RootsDelta& delta, RootsState* state) {
  for (const auto& l : delta.add_layers) state->layers.push_back(l);
  for (const auto& name : delta.drop_roots) {
    std::erase_if(state->roots, [&](const meta::RootRecord& r) { return r.name == name; });
  }
  for (const auto& set : delta.set_roots) {
    auto it = std::find_if(state->roots.begin(), state->roots.end(),
                           [&](const meta::RootRecord& r) { return r.name == set.name; });
    if (it == state->roots.end()) {
      state->roots.push_back(set);
    } else {
      *it = set;
    }
  }
}

// A root change costs one small record, whatever the number of snapshots: a
// delta naming the record it applies to (prev) and the whole record its
// chain starts at (base). A whole record starts a new chain when the chain
// is long, when this process has none yet, or when storage and the index
// may disagree (roots_dirty: a record stored but not committed).
Result<uint64_t> Volume::store_root_change(const RootsDelta& delta) {
  auto applied = index_->get_meta("roots_seq");
  if (!applied.ok()) return applied.status();
  const uint64_t prev = applied->has_value() ? std::stoull(**applied) : 0;
  const bool as_delta = roots_chain_base_ != 0 && roots_chain_len_ < kMaxRootsDeltas && prev == roots_chain_last_ &&
                        !pipeline_.roots_dirty_locked() && !needs_checkpoint_;
  if (!as_delta) {
    auto state = index_roots();
    if (!state.ok()) return state.status();
    apply_delta(delta, &*state);
    return store_roots_record(*state);
  }
  nlohmann::json j;
  j["format"] = 2;
  j["volume_uuid"] = uuid_;
  j["prev"] = prev;
  j["base"] = roots_chain_base_;
  j["add_layers"] = nlohmann::json::array();
  for (const auto& l : delta.add_layers) j["add_layers"].push_back(layer_json(l));
  j["set_roots"] = nlohmann::json::array();
  for (const auto& r : delta.set_roots) j["set_roots"].push_back(root_json(r));
  j["drop_roots"] = delta.drop_roots;
  uint64_t seq;
  {
    MutexLock lock(&layers_.mu());
    seq = pipeline_.take_seqs_locked(1);
  }
  j["seq"] = seq;
  const std::string text = j.dump() + "\n";
  auto* p = reinterpret_cast<const std::byte*>(text.data());
  if (opts_.lease) PBD_RETURN_IF_ERROR(opts_.lease->check().With("store " + roots_key(seq)));
  PBD_RETURN_IF_ERROR(store_->put(roots_key(seq), std::span<const std::byte>(p, text.size())));
  PBD_RETURN_IF_ERROR(pipeline_.confirm_writer("confirm " + roots_key(seq)));
  roots_chain_len_++;
  roots_chain_last_ = seq;
  return seq;
}

// Storage keeps the chain the new whole record `seq` starts and the one
// before it (a start whose newest record is unreadable falls back to the
// record before, which that chain states); everything older goes.
void Volume::prune_roots_records(uint64_t seq) {
  auto logger = log::get("engine");
  std::vector<ObjectInfo> records;
  if (Status st = store_->list("roots/", &records); !st.ok()) {
    logger->warn("could not list roots records to prune them error={}", log::quote(st.ToString()));
    return;
  }
  uint64_t keep_from = roots_chain_base_;
  if (keep_from == 0) {
    // This process stored no chain yet: the one before starts where the
    // newest earlier record says (itself, or its base).
    uint64_t before = 0;
    for (const auto& r : records) {
      const uint64_t s = parse_roots_record_key(r.key);
      if (s != 0 && s < seq) before = std::max(before, s);
    }
    if (before == 0) return;
    std::vector<std::byte> raw;
    if (!store_->get(roots_key(before), &raw).ok()) return;
    try {
      auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
      keep_from = j.at("format").get<int>() == 2 ? j.at("base").get<uint64_t>() : before;
    } catch (const std::exception&) {
      return;  // unreadable: keep everything, a later whole record prunes
    }
  }
  uint64_t removed = 0;
  for (const auto& r : records) {
    const uint64_t s = parse_roots_record_key(r.key);
    if (s == 0 || s >= keep_from) continue;
    if (Status st = store_->remove(r.key); !st.ok()) {
      logger->warn("could not remove an old roots record object={} error={}", r.key, log::quote(st.ToString()));
      return;
    }
    removed++;
  }
  if (removed > 0) logger->debug("pruned old roots records count={} kept_from={}", removed, roots_key(keep_from));
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
  auto state = roots_state_of(raw, 0);
  if (!state.ok()) return state.status();
  return index_->replace_roots(state->layers, state->roots);
}

Result<Volume::RootsState> Volume::roots_state_of(const std::vector<std::byte>& raw, int depth) {
  RootsState state;
  RootsDelta delta;
  uint64_t prev = 0;
  try {
    auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
    const int format = j.at("format").get<int>();
    if (format == 1) {
      for (const auto& l : j.at("layers")) state.layers.push_back(layer_of(l));
      for (const auto& r : j.at("roots")) state.roots.push_back(root_of(r));
      return state;
    }
    if (format != 2) return Status::NotSupported("roots record format is newer than this portalbd");
    prev = j.at("prev").get<uint64_t>();
    for (const auto& l : j.at("add_layers")) delta.add_layers.push_back(layer_of(l));
    for (const auto& r : j.at("set_roots")) delta.set_roots.push_back(root_of(r));
    for (const auto& n : j.at("drop_roots")) delta.drop_roots.push_back(n.get<std::string>());
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("unreadable roots record: ") + e.what());
  }
  if (depth > static_cast<int>(2 * kMaxRootsDeltas)) {
    return Status::Corruption("roots record chain longer than " + std::to_string(2 * kMaxRootsDeltas));
  }
  std::vector<std::byte> before;
  if (Status st = store_->get(roots_key(prev), &before); !st.ok()) {
    if (st.is(Status::Code::kNotFound)) {
      return Status::Corruption("it builds on " + roots_key(prev) + ", which storage no longer holds");
    }
    return st.With("read " + roots_key(prev));
  }
  auto base = roots_state_of(before, depth + 1);
  if (!base.ok()) return base.status().With(roots_key(prev));
  apply_delta(delta, &*base);
  return base;
}

Status Volume::checkpoint_if_needed() {
  FlushPipeline::UploadLock flush_lock(pipeline_);
  if (!needs_checkpoint_) return Status::OK();
  auto ckpt = checkpointer_.take_locked();
  return ckpt.ok() ? Status::OK() : ckpt.status();
}

Result<SnapshotInfo> Volume::create_snapshot(const std::string& name) {
  if (opts_.read_only) return read_only_refusal("snapshot create");
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
  auto existing = index_->find_root(name);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) return Status::AlreadyExists("a snapshot named '" + name + "' already exists");
  auto live = index_->find_root("live");
  if (!live.ok()) return live.status();
  if (!live->has_value()) return Status::Corruption("the index has no live root");
  RootsDelta delta;
  delta.add_layers.push_back({new_id, old_id, now});
  (*live)->layer = new_id;
  delta.set_roots = {**live, rec};
  auto seq = store_root_change(delta);  // R1
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
    return Status(st.code(), "snapshot '" + name +
                                 "' was taken but its data is not yet durable in object storage: " + st.message());
  }
  log::get("engine")->info("snapshot created name={} id={} layer={}", name, rec.uuid, old_id);
  return find_snapshot(name);
}

Result<RestoreResult> Volume::restore_snapshot(const std::string& name, bool discard_current) {
  if (opts_.read_only) return read_only_refusal("snapshot restore");
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
  auto live = index_->find_root("live");
  if (!live.ok()) return live.status();
  if (!live->has_value()) return Status::Corruption("the index has no live root");
  RootsDelta delta;
  delta.add_layers.push_back({new_id, target->layer, now});
  (*live)->layer = new_id;
  delta.set_roots.push_back(**live);
  if (keep) delta.set_roots.push_back(*keep);
  auto seq = store_root_change(delta);  // R1
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
    return Status(st.code(), "restored '" + name +
                                 "' but the replaced state is not yet durable in object storage: " + st.message());
  }
  log::get("engine")->info("snapshot restored name={} pre_restore={} new_layer={}", name,
                           result.pre_restore.empty() ? "none" : result.pre_restore, new_id);
  return result;
}

Status Volume::delete_snapshot(const std::string& name) {
  if (opts_.read_only) return read_only_refusal("snapshot delete");
  PBD_RETURN_IF_ERROR(validate_snapshot_name(name));
  FlushPipeline::UploadLock flush_lock(pipeline_);
  auto root = index_->find_root(name);
  if (!root.ok()) return root.status();
  if (!root->has_value() || (*root)->kind != "snapshot") return Status::NotFound("no snapshot named '" + name + "'");
  RootsDelta delta;
  delta.drop_roots.push_back(name);
  auto seq = store_root_change(delta);  // R1
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
  auto r = index_->find_root(name);
  if (!r.ok()) return r.status();
  if (!r->has_value() || (*r)->kind != "snapshot") return Status::NotFound("no snapshot named '" + name + "'");
  SnapshotInfo info{(*r)->name, (*r)->uuid, (*r)->created_unix_ms, (*r)->layer, 0};
  MutexLock lock(&layers_.mu());
  if (auto layer = layers_.find_locked(info.layer)) info.written_bytes = layer->data_bytes;
  return info;
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
