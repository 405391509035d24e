// Open-time checks of the index against storage, and the bookkeeping that
// keeps storage and the index in step across restarts.
//
// The index is a cache of storage (DESIGN invariant 1). open() serves it only
// when storage holds nothing the index cannot catch up with by replay:
//   * segments newer than the index's last_seq are replayed (replay_storage);
//   * a roots record newer than the index's roots_seq is applied
//     (replay_storage);
//   * a checkpoint newer than everything the index has seen means another
//     writer (or this one, before a lost WAL) merged layers, rewrote or
//     deleted segments: replay cannot redo that, so the index is rebuilt from
//     that checkpoint (rebuild_index_if_behind_storage).
// GC re-checks before it deletes anything (storage_roots_current): a roots
// record newer than the index's means someone else moved the volume on.
#include <algorithm>

#include "src/engine/volume.h"
#include "src/log/log.h"

namespace portalbd {
namespace {

Result<uint64_t> meta_u64(meta::Index& index, const std::string& key) {
  auto v = index.get_meta(key);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return uint64_t{0};
  try {
    return static_cast<uint64_t>(std::stoull(**v));
  } catch (const std::exception&) {
    return Status::Corruption("index meta " + key + " is not a number: '" + **v + "'");
  }
}

uint64_t roots_record_seq(const std::string& key) {  // "roots/<16 hex>.json"
  try {
    return std::stoull(key.substr(6, 16), nullptr, 16);
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

Status Volume::set_needs_checkpoint(bool on) {
  PBD_RETURN_IF_ERROR(index_->set_meta("needs_checkpoint", on ? "1" : "0"));
  needs_checkpoint_ = on;
  return Status::OK();
}

Status Volume::rebuild_index_if_behind_storage() {
  auto last = index_->last_seq();
  if (!last.ok()) return last.status();
  auto roots_seq = meta_u64(*index_, "roots_seq");
  if (!roots_seq.ok()) return roots_seq.status();
  auto checkpoint_seq = meta_u64(*index_, "checkpoint_seq");
  if (!checkpoint_seq.ok()) return checkpoint_seq.status();
  const uint64_t seen = std::max({*last, *roots_seq, *checkpoint_seq});

  std::vector<ObjectInfo> checkpoints;
  PBD_RETURN_IF_ERROR(store_->list("checkpoints/", &checkpoints).With("list checkpoints"));
  uint64_t newest = 0;
  for (const auto& c : checkpoints) newest = std::max(newest, parse_checkpoint_key(c.key));
  if (newest > seen) {
    log::get("engine")->warn(
        "index is behind storage, rebuilding it from storage index={} index_seen_seq={} storage_checkpoint={}",
        opts_.index_path, seen, checkpoint_key(newest));
    PBD_RETURN_IF_ERROR(checkpointer_.restore_if_fresh(true));
    PBD_RETURN_IF_ERROR(index_->set_meta("volume_uuid", uuid_));
  }
  auto owed = index_->get_meta("needs_checkpoint");
  if (!owed.ok()) return owed.status();
  FlushPipeline::UploadLock upload_lock(pipeline_);  // open(): nobody else uploads yet
  needs_checkpoint_ = owed->has_value() && **owed == "1" && !opts_.ephemeral;
  return Status::OK();
}

Status Volume::storage_roots_current() {
  auto mine = meta_u64(*index_, "roots_seq");
  if (!mine.ok()) return mine.status();
  std::vector<ObjectInfo> records;
  PBD_RETURN_IF_ERROR(store_->list("roots/", &records).With("list roots"));
  const uint64_t newest = records.empty() ? 0 : roots_record_seq(records.back().key);
  if (newest > *mine) {
    return Status::Fenced("storage holds roots record " + records.back().key + ", newer than this index's (" +
                          std::to_string(*mine) + "): another writer moved the volume on");
  }
  return Status::OK();
}

}  // namespace portalbd
