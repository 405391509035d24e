// Garbage collection and index checkpoints.
//
// A GC pass (one at a time, under gc_mu_). Steps 1-6 and each rewrite and
// checkpoint run under flush_mu_, so no upload or root change runs
// meanwhile; flush_mu_ is let go between rewrites and for the deletions, so a
// FLUSH waits for at most one rewrite, not for the whole pass:
//   1. upload whatever is sealed, so every segment's references are in maps;
//   2. drop layers that no root's chain reaches (e.g. a live layer discarded
//      by restore --discard-current);
//   3. merge each layer that no root names and that has exactly one child
//      into that child (what is left of a deleted snapshot): the child's
//      extents win, the parent's shadowed extents become garbage;
//   4. count live data bytes per segment over every layer still in memory,
//      including layers that only an open snapshot reader holds;
//   5. rewrite segments whose live share is below rewrite_live_ratio;
//   6. mark unreferenced segments doomed (they wait grace_ms, so a read that
//      resolved a location just before keeps working);
//   7. write a checkpoint, then delete the segments whose grace ended.
// An ephemeral volume (memory://) has no segments of its own: its layers map
// blocks to the buffers writes arrived in. Its passes drop and merge layers
// as above, compact buffers that are mostly overwritten instead of
// rewriting segments (compact_buffers), and take no checkpoint: nothing can
// start from one once the process is gone.
//
// Why a checkpoint before deleting: replaying segments alone can no longer
// rebuild the index once segments are deleted, rewritten or their layers
// merged. A checkpoint taken after those changes and before any deletion
// makes "newest checkpoint + segments newer than it" always enough.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unistd.h>

#include "src/util/clock.h"
#include "src/format/checkpoint_codec.h"
#include "src/engine/volume.h"
#include "src/log/log.h"

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

void Volume::for_each_held_layer_locked(const std::function<void(const std::shared_ptr<Layer>&)>& fn) {
  std::set<const Layer*> seen;
  auto visit = [&](const std::shared_ptr<Layer>& layer) {
    if (seen.insert(layer.get()).second) fn(layer);
  };
  for (const auto& [id, layer] : layers_) visit(layer);
  for (const auto& weak : all_layers_) {
    for (auto l = weak.lock(); l != nullptr; l = l->parent) visit(l);
  }
}

void Volume::track_layer_locked(const std::shared_ptr<Layer>& layer) {
  std::erase_if(all_layers_, [](const std::weak_ptr<Layer>& w) { return w.expired(); });
  all_layers_.push_back(layer);
}

Result<uint64_t> Volume::quiet_seqs_locked(uint64_t count, const std::function<void()>& while_quiet) {
  // Under sustained writes a full buffer would seal while the last one
  // uploads, and sealing_ would seldom be empty. Writers keep writing into the
  // active buffer (within the dirty limit, as always) but do not seal it
  // meanwhile, so the buffers already sealed drain within one upload round.
  // A buffer that filled up meanwhile seals on release, after the sequence
  // numbers taken here.
  auto hold_seals = [this](bool on) {
    std::lock_guard lock(mu_);
    seals_held_ = on;
    seal_if_full_locked();
  };
  hold_seals(true);
  Result<uint64_t> out = Status::Busy("writers keep sealing buffers; try again");
  for (int attempt = 0; attempt < 100; ++attempt) {
    {
      std::lock_guard lock(mu_);
      if (sealing_.empty()) {
        out = next_seq_;
        next_seq_ += count;
        if (while_quiet) while_quiet();
        break;
      }
    }
    if (Status st = upload_sealed(); !st.ok()) {
      out = st;
      break;
    }
  }
  hold_seals(false);
  return out;
}

std::optional<Volume::ChangeMark> Volume::change_mark() {
  if (opts_.ephemeral) return std::nullopt;
  std::lock_guard lock(mu_);
  ChangeMark mark;
  mark.next_seq = next_seq_;
  for (const auto& weak : all_layers_) mark.held_layers += weak.expired() ? 0 : 1;
  return mark;
}

Result<uint64_t> Volume::checkpoint() {
  std::unique_lock flush_lock(flush_mu_, std::defer_lock);
  lock_flush_mu(flush_lock);
  return checkpoint_locked();
}

Result<uint64_t> Volume::checkpoint_locked() {
  if (opts_.ephemeral) {
    return Status::NotSupported("this volume's storage (" + store_->url() +
                                ") keeps nothing past this process, so there is nothing to checkpoint");
  }
  PBD_RETURN_IF_ERROR(upload_sealed());
  auto seq = quiet_seqs_locked(1, nullptr);
  if (!seq.ok()) return seq.status();
  const int64_t now = now_unix_ms();
  PBD_RETURN_IF_ERROR(index_->set_meta("checkpoint_seq", std::to_string(*seq)));
  // Every sequence below the checkpoint's is applied (that is what quiet means).
  PBD_RETURN_IF_ERROR(index_->set_meta("applied_seq", std::to_string(*seq)));
  PBD_RETURN_IF_ERROR(index_->set_meta("checkpoint_unix_ms", std::to_string(now)));
  // The copy owes no checkpoint; the index owes one again if this one fails.
  struct OweAgain {
    Volume* v;
    bool owed;
    bool stored = false;
    ~OweAgain() {
      if (owed && !stored) (void)v->set_needs_checkpoint(true);
    }
  } owe_again{this, needs_checkpoint_};
  PBD_RETURN_IF_ERROR(set_needs_checkpoint(false));
  // Staged next to the index file; an in-memory index has no directory.
  const std::string stage = opts_.index_path == kInMemoryIndex
                                ? (std::filesystem::temp_directory_path() / ("portalbd-" + uuid_)).string()
                                : opts_.index_path;
  const std::string tmp = stage + ".checkpoint." + std::to_string(::getpid());
  std::filesystem::remove(tmp);
  PBD_RETURN_IF_ERROR(index_->copy_to(tmp));
  auto raw = read_file(tmp);
  std::filesystem::remove(tmp);
  if (!raw.ok()) return raw.status();
  auto packed = encode_checkpoint(*raw);  // with a checksum of the index (checkpoint_codec.h)
  if (!packed.ok()) return packed.status();
  const size_t n = packed->size();
  const std::string key = checkpoint_key(*seq);
  PBD_RETURN_IF_ERROR(store_->put(key, *packed).With("upload " + key));
  PBD_RETURN_IF_ERROR(confirm_writer("confirm " + key));  // as any segment (U7)
  owe_again.stored = true;
  // Keep the two newest: an older one is never needed once a newer one is whole.
  std::vector<ObjectInfo> all;
  if (store_->list("checkpoints/", &all).ok() && all.size() > 2) {
    for (size_t i = 0; i + 2 < all.size(); ++i) (void)store_->remove(all[i].key);
  }
  log::get("engine")->info("checkpoint written key={} index_bytes={} stored_bytes={}", key, raw->size(), n);
  // The checkpoint covers what GC merged or dropped. It does not settle
  // roots_dirty_: storage may hold a roots record newer than the index's
  // roots_seq (R1 in volume_snapshot.cc), which a rebuild from this
  // checkpoint would apply; only a new roots record settles that.
  needs_checkpoint_ = false;
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
Status Volume::restore_checkpoint_if_fresh(bool fresh_index) {
  if (!fresh_index) return Status::OK();
  std::vector<ObjectInfo> all;
  PBD_RETURN_IF_ERROR(store_->list("checkpoints/", &all).With("list checkpoints"));
  std::erase_if(all, [](const ObjectInfo& c) { return parse_checkpoint_key(c.key) == 0; });
  if (all.empty()) return Status::OK();
  if (opts_.index_path == kInMemoryIndex) {
    return Status::NotSupported("the volume has checkpoints in storage; an in-memory index cannot start from one");
  }
  auto logger = log::get("engine");
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    Status st = restore_checkpoint(it->key);
    if (st.ok()) return Status::OK();
    if (!st.is(Status::Code::kCorruption)) return st;
    logger->warn("skipping a damaged checkpoint object={} error={}", it->key, log::quote(st.message()));
    PBD_RETURN_IF_ERROR(quarantine_object(it->key, "damaged checkpoint: " + st.message()));
  }
  // No usable checkpoint: an empty index, which replay fills from the segments.
  index_.reset();
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(opts_.index_path + suffix);
  auto index = meta::Index::Open(opts_.index_path);
  if (!index.ok()) return index.status();
  index_ = std::move(*index);
  PBD_RETURN_IF_ERROR(index_->set_meta("volume_uuid", uuid_));
  logger->warn("no usable checkpoint in storage, rebuilding the index from segments alone storage={}",
               log::quote(store_->url()));
  return Status::OK();
}

// Replaces the index with checkpoint `key`. kCorruption when the object is
// not a whole checkpoint of this volume at the sequence its key names; the
// index is then left empty.
Status Volume::restore_checkpoint(const std::string& key) {
  std::vector<std::byte> packed;
  PBD_RETURN_IF_ERROR(store_->get(key, &packed).With("read " + key));
  auto decoded = decode_checkpoint(packed);
  if (!decoded.ok()) return decoded.status().With(key);
  index_.reset();
  auto discard = [&] {
    index_.reset();
    for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(opts_.index_path + suffix);
  };
  discard();
  {
    std::ofstream out(opts_.index_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(decoded->index_file.data()),
              static_cast<std::streamsize>(decoded->index_file.size()));
    if (!out) return Status::IOError("cannot write " + opts_.index_path);
  }
  // What SQLite says of the file is about the checkpoint's bytes: damage.
  auto damaged = [&](const std::string& why) {
    discard();
    return Status::Corruption(key + ": " + why);
  };
  auto index = meta::Index::Open(opts_.index_path);
  if (!index.ok()) return damaged(index.status().message());
  index_ = std::move(*index);
  auto owner = index_->get_meta("volume_uuid");
  if (!owner.ok()) return damaged(owner.status().message());
  if (!owner->has_value() || **owner != uuid_) return damaged("belongs to another volume");
  auto seq = index_->get_meta("checkpoint_seq");
  if (!seq.ok()) return damaged(seq.status().message());
  if (seq->has_value() && **seq != std::to_string(parse_checkpoint_key(key))) {
    return damaged("holds the index as of sequence " + **seq + ", not the one its key names");
  }
  if (auto last = index_->last_seq(); !last.ok()) return damaged(last.status().message());
  log::get("engine")->info("index restored from checkpoint key={} bytes={} checksum={}", key,
                           decoded->index_file.size(), decoded->checksummed ? "verified" : "none (an older checkpoint)");
  return Status::OK();
}

// Copies the blocks that layers still map to segment `seq` into new
// segments (one per layer), so `seq` becomes unreferenced.
Status Volume::rewrite_segment_locked(uint64_t seq, const std::vector<SegmentRef>& refs, GcReport* report) {
  struct Move {
    std::shared_ptr<Layer> layer;
    uint64_t new_seq = 0;
    std::vector<Piece> pieces;
  };
  std::map<uint64_t, Move> moves;  // by layer id
  // Re-check under mu_ at a quiet moment: only ranges still mapped to `seq`
  // move, and the new sequence numbers are above every pending write.
  auto quiet = quiet_seqs_locked(0, [&] {
    for (const auto& ref : refs) {
      auto it = layers_.find(ref.layer);
      if (it == layers_.end()) continue;
      it->second->map.visit(ref.lba, ref.nblocks, [&](uint64_t lba, uint64_t n, const BlockSource& src) {
        if (src.state != ExtentState::kData || src.buffered() || src.seq != seq) return;
        Move& m = moves[ref.layer];
        m.layer = it->second;
        m.pieces.emplace_back(lba, n, src);
      });
    }
    for (auto& [id, m] : moves) m.new_seq = next_seq_++;
  });
  if (!quiet.ok()) return quiet.status();

  for (auto& [id, m] : moves) {
    SegmentBuilder builder(m.new_seq, id, opts_.codec, now_unix_ms());
    for (const auto& [lba, n, src] : m.pieces) {
      auto frame = load_frame(seq, src.frame);
      if (!frame.ok()) return frame.status().With("gc rewrite of segment " + std::to_string(seq));
      builder.add_data(lba, std::span<const std::byte>(frame->bytes.data() + src.block_in_frame * uint64_t{kBlockSize},
                                                       n * kBlockSize));
    }
    auto object = std::make_shared<const std::vector<std::byte>>(builder.finish());
    const SegmentFooter& footer = builder.footer();
    const std::string key = segment_key(m.new_seq);
    // Checked before the PUT and confirmed after it, as any segment (U6, U7).
    PBD_RETURN_IF_ERROR(store_segment(key, object).With("gc"));
    PBD_RETURN_IF_ERROR(confirm_writer("gc: confirm " + key + " before committing it"));
    PBD_RETURN_IF_ERROR(index_->apply_segment(footer, object->size()).With("gc index " + key));
    std::lock_guard lock(mu_);
    for (const auto& e : footer.entries) {
      BlockSource src;
      src.state = ExtentState::kData;
      src.seq = m.new_seq;
      src.frame = footer.frames[e.frame];
      src.block_in_frame = e.block_in_frame;
      m.layer->assign(e.lba, e.nblocks, src);
    }
    report->bytes_rewritten += footer.data_bytes();
  }
  report->segments_rewritten++;
  return Status::OK();
}

// An ephemeral volume's layers hold the buffers writes arrived in, and a
// buffer lives while any block of it is mapped: a 1 MiB write overwritten
// but for one block still holds 1 MiB. Buffers whose mapped share is below
// rewrite_live_ratio get their mapped blocks copied into buffers of their
// own, so the old one is freed once readers let go of it.
void Volume::compact_buffers(const GcOptions& options, GcReport* report) {
  struct Use {
    std::shared_ptr<const std::vector<std::byte>> buffer;  // pinned: its address stays its own
    uint64_t mapped_bytes = 0;
    std::vector<std::pair<std::shared_ptr<Layer>, uint64_t>> refs;  // (layer, first block of an extent)
  };
  std::map<const std::vector<std::byte>*, Use> uses;
  {
    std::lock_guard lock(mu_);
    for_each_held_layer_locked([&](const std::shared_ptr<Layer>& layer) {
      for (const auto& [lba, node] : layer->map.entries()) {
        if (node.value.state != ExtentState::kData || !node.value.buffered()) continue;
        Use& u = uses[node.value.bytes.get()];
        u.buffer = node.value.bytes;
        u.mapped_bytes += node.length * kBlockSize;
        u.refs.emplace_back(layer, lba);
      }
    });
  }
  // One buffer per critical section: writers wait for one copy at most.
  uint64_t budget = options.max_rewrite_bytes;
  for (const auto& [raw, use] : uses) {
    if (static_cast<double>(use.mapped_bytes) >= options.rewrite_live_ratio * static_cast<double>(raw->size())) {
      continue;
    }
    if (use.mapped_bytes > budget) break;
    budget -= use.mapped_bytes;
    std::lock_guard lock(mu_);
    for (const auto& [layer, lba] : use.refs) {
      // Writes may have replaced the extent meanwhile: copy only what still
      // maps to this buffer, exactly as it was found.
      auto it = layer->map.entries().find(lba);
      if (it == layer->map.entries().end() || it->second.value.bytes != use.buffer) continue;
      const uint64_t nblocks = it->second.length;
      const std::byte* from = use.buffer->data() + it->second.value.byte_offset;
      BlockSource copy;
      copy.state = ExtentState::kData;
      copy.bytes = make_block_buffer(std::vector<std::byte>(from, from + nblocks * kBlockSize));
      copy.private_to = layer->id;  // only this layer's map refers to the copy
      layer->map.assign(lba, nblocks, std::move(copy));  // the same blocks: data_bytes unchanged
      report->bytes_rewritten += nblocks * kBlockSize;
    }
    report->buffers_compacted++;
  }
}

Result<GcReport> Volume::gc(const GcOptions& options) {
  std::lock_guard gc_lock(gc_mu_);
  std::unique_lock flush_lock(flush_mu_, std::defer_lock);
  lock_flush_mu(flush_lock);
  auto logger = log::get("engine");
  GcReport report;
  PBD_RETURN_IF_ERROR(upload_sealed());
  bool changed = false;

  // 2. Layers no root reaches.
  auto roots = index_->list_roots();
  if (!roots.ok()) return roots.status();
  std::set<uint64_t> named, needed;
  std::vector<uint64_t> unneeded;
  {
    std::lock_guard lock(mu_);
    for (const auto& r : *roots) {
      named.insert(r.layer);
      auto it = layers_.find(r.layer);
      for (const Layer* l = it == layers_.end() ? nullptr : it->second.get(); l != nullptr; l = l->parent.get()) {
        needed.insert(l->id);
      }
    }
    for (const auto& [id, layer] : layers_) {
      if (!needed.count(id)) unneeded.push_back(id);
    }
  }
  // Storage's roots record still names what is dropped or merged below:
  // the index owes storage a checkpoint from the first change on, and
  // remembers that across a restart.
  auto owe_checkpoint = [&]() -> Status {
    return opts_.ephemeral || needs_checkpoint_ ? Status::OK() : set_needs_checkpoint(true);
  };
  for (uint64_t id : unneeded) {
    PBD_RETURN_IF_ERROR(owe_checkpoint());
    PBD_RETURN_IF_ERROR(index_->drop_layer(id));
    std::lock_guard lock(mu_);
    layers_.erase(id);
    report.layers_dropped++;
    changed = true;
  }

  // 3. Merge rootless layers into their only child.
  for (;;) {
    std::shared_ptr<Layer> parent, child;
    {
      std::lock_guard lock(mu_);
      std::map<uint64_t, std::vector<std::shared_ptr<Layer>>> children;
      for (const auto& [id, layer] : layers_) {
        if (layer->parent) children[layer->parent->id].push_back(layer);
      }
      for (const auto& [id, kids] : children) {
        if (kids.size() == 1 && !named.count(id) && layers_.count(id)) {
          parent = layers_[id];
          child = kids[0];
          break;
        }
      }
    }
    if (!parent) break;
    ExtentMap<BlockSource> merged;
    std::vector<meta::MappedExtent> rows;
    {
      std::lock_guard lock(mu_);
      merged = parent->map;
      for (const auto& [lba, node] : child->map.entries()) merged.assign(lba, node.length, node.value);
    }
    // Blocks held in memory (ephemeral volumes) have no index rows.
    if (!opts_.ephemeral) rows = index_rows(merged);
    const uint64_t grandparent = parent->parent ? parent->parent->id : 0;
    PBD_RETURN_IF_ERROR(owe_checkpoint());
    PBD_RETURN_IF_ERROR(index_->replace_layer(child->id, grandparent, rows, parent->id));
    std::lock_guard lock(mu_);
    // Readers of `child` see the same blocks before and after: the merged map
    // over the grandparent equals child over parent over grandparent.
    child->map = std::move(merged);
    child->recount();
    child->parent = parent->parent;
    layers_.erase(parent->id);
    report.layers_merged++;
    changed = true;
  }
  // No roots record here: segments in storage still name the merged layers,
  // so the checkpoint at the end of this pass must come first
  // (needs_checkpoint_, set above).

  // 4. Live bytes per segment, over every layer any root or reader holds.
  std::map<uint64_t, uint64_t> live;
  std::map<uint64_t, std::vector<SegmentRef>> refs;
  {
    std::lock_guard lock(mu_);
    for_each_held_layer_locked([&](const std::shared_ptr<Layer>& layer) {
      for (const auto& [lba, node] : layer->map.entries()) {
        const BlockSource& src = node.value;
        if (src.state != ExtentState::kData || src.buffered()) continue;
        live[src.seq] += node.length * kBlockSize;
        refs[src.seq].push_back({layer->id, lba, node.length});
      }
    });
  }

  // 5 and 6. Rewrite sparse segments; doom unreferenced ones.
  auto segments = index_->list_segments();
  if (!segments.ok()) return segments.status();
  const int64_t now = now_unix_ms();
  std::vector<const meta::SegmentRecord*> sparse;
  std::vector<uint64_t> deletable;
  // Doomed-time changes, stored together: under sustained small writes a pass
  // finds hundreds of newly unreferenced segments, and this runs under the
  // upload lock; one index commit (an fsync) for all, not one each.
  std::vector<std::pair<uint64_t, int64_t>> marks;
  for (const auto& seg : *segments) {
    const uint64_t l = live.count(seg.seq) ? live[seg.seq] : 0;
    if (l == 0) {
      if (seg.doomed_ms == 0) {
        marks.emplace_back(seg.seq, now);
        report.segments_doomed++;
        changed = true;
      } else if (now - seg.doomed_ms >= options.grace_ms) {
        deletable.push_back(seg.seq);
      } else {
        report.segments_waiting++;
        const int64_t due = seg.doomed_ms + options.grace_ms;
        if (report.next_delete_unix_ms == 0 || due < report.next_delete_unix_ms) report.next_delete_unix_ms = due;
      }
      if (seg.doomed_ms == 0) {
        report.segments_waiting++;
        const int64_t due = now + options.grace_ms;
        if (report.next_delete_unix_ms == 0 || due < report.next_delete_unix_ms) report.next_delete_unix_ms = due;
      }
    } else {
      if (seg.doomed_ms != 0) marks.emplace_back(seg.seq, 0);  // referenced again
      if (seg.data_bytes > 0 && static_cast<double>(l) < options.rewrite_live_ratio * static_cast<double>(seg.data_bytes)) {
        sparse.push_back(&seg);
      }
    }
  }
  PBD_RETURN_IF_ERROR(index_->set_doomed(marks));
  std::sort(sparse.begin(), sparse.end(), [&](auto* a, auto* b) { return live[a->seq] * b->data_bytes < live[b->seq] * a->data_bytes; });
  // From here on flush_mu_ is held one step at a time. What was decided above
  // stays true meanwhile: only GC merges layers or moves blocks between
  // segments, so a segment found unreferenced never gains a reference, and
  // each rewrite re-checks which blocks still map to its segment.
  flush_lock.unlock();
  uint64_t budget = options.max_rewrite_bytes;
  for (const auto* seg : sparse) {
    if (live[seg->seq] > budget) break;
    budget -= live[seg->seq];
    lock_flush_mu(flush_lock);
    PBD_RETURN_IF_ERROR(rewrite_segment_locked(seg->seq, refs[seg->seq], &report));
    // Now unreferenced: doomed from this moment.
    PBD_RETURN_IF_ERROR(index_->set_doomed(seg->seq, now));
    flush_lock.unlock();
    report.segments_doomed++;
    report.segments_waiting++;
    changed = true;
  }

  if (opts_.ephemeral) compact_buffers(options, &report);

  // 7. Checkpoint before deleting anything, then delete. The deletions need
  // no lock: nothing references these segments, and the checkpoint that no
  // longer needs them is stored.
  if ((changed || !deletable.empty()) && !opts_.ephemeral) {
    lock_flush_mu(flush_lock);
    auto ckpt = checkpoint_locked();
    flush_lock.unlock();
    if (!ckpt.ok()) return ckpt.status().With("gc checkpoint");
    report.checkpoint_seq = *ckpt;
  }
  // Nothing is deleted that a roots record this index has not seen could
  // reach (another writer moved the volume on).
  if (!deletable.empty()) PBD_RETURN_IF_ERROR(storage_roots_current().With("gc"));
  for (uint64_t seq : deletable) {
    const std::string key = segment_key(seq);
    // Each deletion, however long the list: a writer that lost the volume
    // meanwhile deletes nothing more.
    PBD_RETURN_IF_ERROR(confirm_writer("gc delete " + key));
    auto info = store_->head(key);
    PBD_RETURN_IF_ERROR(store_->remove(key).With("gc delete " + key));
    PBD_RETURN_IF_ERROR(index_->forget_segment(seq));
    report.segments_deleted++;
    if (info.ok()) report.bytes_deleted += info->size;
  }

  // 8. Keep rebuilds short: a checkpoint once enough was written since the last.
  if (report.checkpoint_seq == 0 && options.checkpoint_after_seqs > 0 && !opts_.ephemeral) {
    uint64_t last = 0;
    if (auto v = index_->get_meta("checkpoint_seq"); v.ok() && v->has_value()) last = std::stoull(**v);
    uint64_t head;
    {
      std::lock_guard lock(mu_);
      head = next_seq_ - 1;
    }
    if (head >= last + options.checkpoint_after_seqs) {
      lock_flush_mu(flush_lock);
      auto ckpt = checkpoint_locked();
      flush_lock.unlock();
      if (!ckpt.ok()) return ckpt.status().With("gc checkpoint");
      report.checkpoint_seq = *ckpt;
    }
  }

  report.bytes_stored = bytes_stored();
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, layer] : layers_) report.bytes_live += layer->data_bytes;
  }
  logger->info(
      "gc pass layers_dropped={} layers_merged={} segments_rewritten={} buffers_compacted={} bytes_rewritten={} "
      "segments_deleted={} bytes_deleted={} segments_waiting={} bytes_stored={} bytes_live={}",
      report.layers_dropped, report.layers_merged, report.segments_rewritten, report.buffers_compacted,
      report.bytes_rewritten,
      report.segments_deleted, report.bytes_deleted, report.segments_waiting, report.bytes_stored, report.bytes_live);
  return report;
}

}  // namespace portalbd
