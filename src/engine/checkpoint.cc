// Index checkpoints: a compressed copy of the SQLite index in object
// storage (checkpoints/<seq>.sqlite.zst), so a rebuild from storage starts
// from the newest one instead of replaying every segment.
//
// Why GC takes one before deleting: replaying segments alone can no longer
// rebuild the index once segments are deleted, rewritten or their layers
// merged. A checkpoint taken after those changes and before any deletion
// makes "newest checkpoint + segments newer than it" always enough.
#include "src/engine/checkpoint.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "src/engine/volume.h"
#include "src/format/checkpoint_codec.h"
#include "src/log/log.h"
#include "src/util/clock.h"

namespace portalbd {
namespace {

Result<std::vector<std::byte>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read " + path);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto* p = reinterpret_cast<const std::byte*>(raw.data());
  return std::vector<std::byte>(p, p + raw.size());
}

}  // namespace

Result<uint64_t> Checkpointer::take() {
  FlushPipeline::UploadLock flush_lock(pipeline_);
  return take_locked();
}

Result<uint64_t> Checkpointer::take_locked() {
  if (v_.opts_.ephemeral) {
    return Status::NotSupported("this volume's storage (" + v_.store_->url() +
                                ") keeps nothing past this process, so there is nothing to checkpoint");
  }
  PBD_RETURN_IF_ERROR(pipeline_.upload_sealed());
  auto seq = pipeline_.quiet_seqs(1, nullptr);
  if (!seq.ok()) return seq.status();
  const int64_t now = now_unix_ms();
  PBD_RETURN_IF_ERROR(v_.index_->set_meta("checkpoint_seq", std::to_string(*seq)));
  // Every sequence below the checkpoint's is applied (that is what quiet means).
  PBD_RETURN_IF_ERROR(v_.index_->set_meta("applied_seq", std::to_string(*seq)));
  PBD_RETURN_IF_ERROR(v_.index_->set_meta("checkpoint_unix_ms", std::to_string(now)));
  // The copy owes no checkpoint; the index owes one again if this one fails.
  struct OweAgain {
    Volume& v;
    bool owed;
    bool stored = false;
    ~OweAgain() {
      if (owed && !stored) (void)v.set_needs_checkpoint(true);
    }
  } owe_again{v_, v_.needs_checkpoint_};
  PBD_RETURN_IF_ERROR(v_.set_needs_checkpoint(false));
  // Staged next to the index file; an in-memory index has no directory.
  const std::string stage = v_.opts_.index_path == kInMemoryIndex
                                ? (std::filesystem::temp_directory_path() / ("portalbd-" + v_.uuid_)).string()
                                : v_.opts_.index_path;
  const std::string tmp = stage + ".checkpoint." + std::to_string(::getpid());
  std::filesystem::remove(tmp);
  PBD_RETURN_IF_ERROR(v_.index_->copy_to(tmp));
  auto raw = read_file(tmp);
  std::filesystem::remove(tmp);
  if (!raw.ok()) return raw.status();
  auto packed = encode_checkpoint(*raw);  // with a checksum of the index (checkpoint_codec.h)
  if (!packed.ok()) return packed.status();
  const size_t n = packed->size();
  const std::string key = checkpoint_key(*seq);
  PBD_RETURN_IF_ERROR(v_.store_->put(key, *packed).With("upload " + key));
  PBD_RETURN_IF_ERROR(pipeline_.confirm_writer("confirm " + key));  // as any segment (U7)
  owe_again.stored = true;
  // Keep the two newest: an older one is never needed once a newer one is whole.
  std::vector<ObjectInfo> all;
  if (v_.store_->list("checkpoints/", &all).ok() && all.size() > 2) {
    for (size_t i = 0; i + 2 < all.size(); ++i) (void)v_.store_->remove(all[i].key);
  }
  log::get("engine")->info("checkpoint written key={} index_bytes={} stored_bytes={}", key, raw->size(), n);
  // The checkpoint covers what GC merged or dropped. It does not settle
  // roots_dirty_: storage may hold a roots record newer than the index's
  // roots_seq (R1 in volume_snapshot.cc), which a rebuild from this
  // checkpoint would apply; only a new roots record settles that.
  v_.needs_checkpoint_ = false;
  return *seq;
}

// Called at open. When the local index is new (or was reset because it
// belonged to another volume, or is behind storage), start from the newest
// checkpoint in storage rather than replaying every segment since the
// beginning. A damaged checkpoint (checksum, truncation, not an index of
// this volume, not the sequence its key names) is quarantined with a warning
// naming it, and the next older one is tried; with none left the index is
// rebuilt from the segments alone, and replay_storage() refuses if GC has
// deleted some it would need.
Status Checkpointer::restore_if_fresh(bool fresh_index) {
  if (!fresh_index) return Status::OK();
  std::vector<ObjectInfo> all;
  PBD_RETURN_IF_ERROR(v_.store_->list("checkpoints/", &all).With("list checkpoints"));
  std::erase_if(all, [](const ObjectInfo& c) { return parse_checkpoint_key(c.key) == 0; });
  if (all.empty()) return Status::OK();
  if (v_.opts_.index_path == kInMemoryIndex) {
    return Status::NotSupported("the volume has checkpoints in storage; an in-memory index cannot start from one");
  }
  auto logger = log::get("engine");
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    Status st = restore(it->key);
    if (st.ok()) return Status::OK();
    if (!st.is(Status::Code::kCorruption)) return st;
    logger->warn("skipping a damaged checkpoint object={} error={}", it->key, log::quote(st.message()));
    PBD_RETURN_IF_ERROR(v_.quarantine_object(it->key, "damaged checkpoint: " + st.message()));
  }
  // No usable checkpoint: an empty index, which replay fills from the segments.
  v_.index_.reset();
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(v_.opts_.index_path + suffix);
  auto index = meta::Index::Open(v_.opts_.index_path);
  if (!index.ok()) return index.status();
  v_.index_ = std::move(*index);
  PBD_RETURN_IF_ERROR(v_.index_->set_meta("volume_uuid", v_.uuid_));
  logger->warn("no usable checkpoint in storage, rebuilding the index from segments alone storage={}",
               log::quote(v_.store_->url()));
  return Status::OK();
}

// Replaces the index with checkpoint `key`. kCorruption when the object is
// not a whole checkpoint of this volume at the sequence its key names; the
// index is then left empty.
Status Checkpointer::restore(const std::string& key) {
  std::vector<std::byte> packed;
  PBD_RETURN_IF_ERROR(v_.store_->get(key, &packed).With("read " + key));
  auto decoded = decode_checkpoint(packed);
  if (!decoded.ok()) return decoded.status().With(key);
  v_.index_.reset();
  auto discard = [&] {
    v_.index_.reset();
    for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(v_.opts_.index_path + suffix);
  };
  discard();
  {
    std::ofstream out(v_.opts_.index_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(decoded->index_file.data()),
              static_cast<std::streamsize>(decoded->index_file.size()));
    if (!out) return Status::IOError("cannot write " + v_.opts_.index_path);
  }
  // What SQLite says of the file is about the checkpoint's bytes: damage.
  auto damaged = [&](const std::string& why) {
    discard();
    return Status::Corruption(key + ": " + why);
  };
  auto index = meta::Index::Open(v_.opts_.index_path);
  if (!index.ok()) return damaged(index.status().message());
  v_.index_ = std::move(*index);
  auto owner = v_.index_->get_meta("volume_uuid");
  if (!owner.ok()) return damaged(owner.status().message());
  if (!owner->has_value() || **owner != v_.uuid_) return damaged("belongs to another volume");
  auto seq = v_.index_->get_meta("checkpoint_seq");
  if (!seq.ok()) return damaged(seq.status().message());
  if (seq->has_value() && **seq != std::to_string(parse_checkpoint_key(key))) {
    return damaged("holds the index as of sequence " + **seq + ", not the one its key names");
  }
  if (auto last = v_.index_->last_seq(); !last.ok()) return damaged(last.status().message());
  log::get("engine")->info("index restored from checkpoint key={} bytes={} checksum={}", key,
                           decoded->index_file.size(),
                           decoded->checksummed ? "verified" : "none (an older checkpoint)");
  return Status::OK();
}

}  // namespace portalbd
