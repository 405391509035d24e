// A GC pass, step by step; see gc.h.
#include "src/engine/gc.h"

#include <algorithm>
#include <unordered_set>

#include "src/engine/checkpoint.h"
#include "src/log/log.h"
#include "src/util/clock.h"

namespace portalbd {

GarbageCollector::GarbageCollector(Volume& volume, const GcOptions& options) : v_(volume), options_(options) {}

Result<GcReport> GarbageCollector::run() {
  MutexLock gc_lock(&v_.gc_mu_);
  {
    FlushPipeline::UploadLock upload_lock(v_.pipeline_);
    PBD_RETURN_IF_ERROR(upload_pending());
    PBD_RETURN_IF_ERROR(drop_unreachable_layers());
    PBD_RETURN_IF_ERROR(merge_rootless_layers());
    PBD_RETURN_IF_ERROR(count_live_bytes());
    PBD_RETURN_IF_ERROR(classify_segments());
  }
  // From here on the upload lock is held one step at a time. What was decided
  // above stays true meanwhile: only GC merges layers or moves blocks between
  // segments, so a segment found unreferenced never gains a reference, and
  // each rewrite re-checks which blocks still map to its segment.
  PBD_RETURN_IF_ERROR(rewrite_sparse_segments());
  if (v_.opts_.ephemeral) compact_buffers();
  PBD_RETURN_IF_ERROR(checkpoint_before_deleting());
  PBD_RETURN_IF_ERROR(delete_expired_segments());
  PBD_RETURN_IF_ERROR(checkpoint_if_due());

  report_.bytes_stored = v_.bytes_stored();
  {
    MutexLock lock(&v_.layers_.mu());
    report_.bytes_live = v_.layers_.data_bytes_locked();
  }
  log::get("engine")->info(
      "gc pass layers_dropped={} layers_merged={} segments_rewritten={} buffers_compacted={} bytes_rewritten={} "
      "segments_deleted={} bytes_deleted={} cached_frames_dropped={} segments_waiting={} bytes_stored={} "
      "bytes_live={}",
      report_.layers_dropped, report_.layers_merged, report_.segments_rewritten, report_.buffers_compacted,
      report_.bytes_rewritten, report_.segments_deleted, report_.bytes_deleted, report_.cached_frames_dropped,
      report_.segments_waiting, report_.bytes_stored, report_.bytes_live);
  return report_;
}

Status GarbageCollector::owe_checkpoint() {
  return v_.opts_.ephemeral || v_.needs_checkpoint_ ? Status::OK() : v_.set_needs_checkpoint(true);
}

// 1.
Status GarbageCollector::upload_pending() { return v_.pipeline_.upload_sealed(); }

// 2.
Status GarbageCollector::drop_unreachable_layers() {
  auto roots = v_.index_->list_roots();
  if (!roots.ok()) return roots.status();
  std::set<uint64_t> needed;
  std::vector<uint64_t> unneeded;
  {
    MutexLock lock(&v_.layers_.mu());
    for (const auto& r : *roots) {
      named_.insert(r.layer);
      for (auto l = v_.layers_.find_locked(r.layer); l != nullptr; l = l->parent) needed.insert(l->id);
    }
    for (const auto& [id, layer] : v_.layers_.by_id_locked()) {
      if (!needed.count(id)) unneeded.push_back(id);
    }
  }
  for (uint64_t id : unneeded) {
    PBD_RETURN_IF_ERROR(owe_checkpoint());
    {
      // Held by more than the set and this loop (a reader, a layer above):
      // it may still be read once the index has forgotten it, so whole.
      MutexLock lock(&v_.layers_.mu());
      auto layer = v_.layers_.find_locked(id);
      if (layer && layer.use_count() > 2) PBD_RETURN_IF_ERROR(v_.layers_.make_resident_locked(*layer));
    }
    PBD_RETURN_IF_ERROR(v_.index_->drop_layer(id));
    MutexLock lock(&v_.layers_.mu());
    v_.layers_.forget_locked(id);
    report_.layers_dropped++;
    changed_ = true;
  }
  return Status::OK();
}

// 3.
Status GarbageCollector::merge_rootless_layers() {
  for (;;) {
    // A run of layers no root names, each with exactly one child, and the
    // child above the newest of them: merged in one step, however long the
    // run (a prune of 10,000 snapshots leaves one of 10,000), so the merge
    // costs the extents once, not once per layer.
    std::vector<std::shared_ptr<Layer>> run;  // oldest first
    std::shared_ptr<Layer> child;
    {
      MutexLock lock(&v_.layers_.mu());
      std::map<uint64_t, std::vector<std::shared_ptr<Layer>>> children;
      for (const auto& [id, layer] : v_.layers_.by_id_locked()) {
        if (layer->parent) children[layer->parent->id].push_back(layer);
      }
      auto mergeable = [&](const Layer* l) {
        v_.layers_.mu().assert_held();  // called in this critical section only
        if (l == nullptr) return false;
        auto it = children.find(l->id);
        return it != children.end() && it->second.size() == 1 && !named_.count(l->id) && v_.layers_.find_locked(l->id);
      };
      for (const auto& [id, layer] : v_.layers_.by_id_locked()) {
        if (!mergeable(layer.get())) continue;
        std::shared_ptr<Layer> bottom = layer;
        while (mergeable(bottom->parent.get())) bottom = bottom->parent;  // its only child is bottom
        for (auto l = bottom; mergeable(l.get()); l = children[l->id][0]) run.push_back(l);
        child = children[run.back()->id][0];
        break;
      }
    }
    if (run.empty()) return Status::OK();
    // Every extent of the run and the child: the maps of resident layers,
    // the index rows of paged ones (which hold still: only commits and GC
    // change rows, and this runs under the upload lock).
    std::vector<ExtentMap<BlockSource>> whole(run.size() + 1);
    for (size_t i = 0; i <= run.size(); i++) {
      const std::shared_ptr<Layer>& layer = i < run.size() ? run[i] : child;
      bool paged;
      {
        MutexLock lock(&v_.layers_.mu());
        paged = layer->paged();
        if (!paged) whole[i] = layer->map;
      }
      if (paged) {
        PBD_RETURN_IF_ERROR(v_.index_->scan_layer(
            layer->id, [&](const meta::MappedExtent& x) { whole[i].append(x.lba, x.nblocks, source_of(x)); }));
      }
    }
    ExtentMap<BlockSource> merged = whole[0];
    for (size_t i = 1; i <= run.size(); i++) {
      for (const auto& [lba, node] : whole[i].entries()) merged.assign(lba, node.length, node.value);
    }
    // Blocks held in memory (ephemeral volumes) have no index rows.
    std::vector<meta::MappedExtent> rows;
    if (!v_.opts_.ephemeral) rows = index_rows(merged);
    const std::shared_ptr<Layer> grandparent = run.front()->parent;
    std::vector<uint64_t> gone;
    for (const auto& l : run) gone.push_back(l->id);
    PBD_RETURN_IF_ERROR(owe_checkpoint());
    {
      MutexLock lock(&v_.layers_.mu());
      // Readers of `child` see the same blocks before and after: the merged
      // map over the grandparent equals child over the run over the
      // grandparent. In memory first, resident, and the index after: a chunk
      // loaded from the index while it changes could see either half. The
      // run's layers stay whole for whatever reader still holds one.
      for (size_t i = 0; i < run.size(); i++) v_.layers_.make_resident_locked(*run[i], std::move(whole[i]));
      v_.layers_.make_resident_locked(*child, std::move(merged));
      child->parent = grandparent;
      for (uint64_t id : gone) v_.layers_.forget_locked(id);
    }
    PBD_RETURN_IF_ERROR(v_.index_->replace_layer(child->id, grandparent ? grandparent->id : 0, rows, gone));
    {
      MutexLock lock(&v_.layers_.mu());
      v_.layers_.page_out_locked(*child);  // the index holds the merge now
    }
    report_.layers_merged += gone.size();
    changed_ = true;
  }
  // No roots record here: segments in storage still name the merged layers,
  // so the checkpoint of step 7 must come first (needs_checkpoint_).
}

// 4.
Status GarbageCollector::count_live_bytes() {
  // Paged layers are counted from their index rows, which hold still under
  // the upload lock.
  {
    MutexLock lock(&v_.layers_.mu());
    v_.layers_.for_each_held_locked([&](const std::shared_ptr<Layer>& layer) {
      if (layer->paged()) {
        paged_.push_back(layer->id);
        return;
      }
      for (const auto& [lba, node] : layer->map.entries()) {
        const BlockSource& src = node.value;
        if (src.state != ExtentState::kData || src.buffered()) continue;
        live_[src.seq] += node.length * kBlockSize;
        refs_[src.seq].push_back({layer->id, lba, node.length});
      }
    });
  }
  for (uint64_t id : paged_) {
    PBD_RETURN_IF_ERROR(v_.index_->scan_layer(id, [&](const meta::MappedExtent& x) {
      if (x.state == ExtentState::kData) live_[x.seq] += x.nblocks * kBlockSize;
    }));
  }
  return Status::OK();
}

// 5.
Status GarbageCollector::classify_segments() {
  auto segments = v_.index_->list_segments();
  if (!segments.ok()) return segments.status();
  segments_ = std::move(*segments);
  now_unix_ms_ = now_unix_ms();
  auto wait_until = [&](int64_t due) {
    report_.segments_waiting++;
    if (report_.next_delete_unix_ms == 0 || due < report_.next_delete_unix_ms) report_.next_delete_unix_ms = due;
  };
  // Doomed-time changes, stored together: under sustained small writes a pass
  // finds hundreds of newly unreferenced segments, and this runs under the
  // upload lock; one index commit (an fsync) for all, not one each.
  std::vector<std::pair<uint64_t, int64_t>> marks;
  for (const auto& seg : segments_) {
    const uint64_t l = live_.count(seg.seq) ? live_[seg.seq] : 0;
    if (l == 0) {
      if (seg.doomed_ms == 0) {
        marks.emplace_back(seg.seq, now_unix_ms_);
        report_.segments_doomed++;
        changed_ = true;
        wait_until(now_unix_ms_ + options_.grace_ms);
      } else if (now_unix_ms_ - seg.doomed_ms >= options_.grace_ms) {
        deletable_.push_back(seg.seq);
      } else {
        wait_until(seg.doomed_ms + options_.grace_ms);
      }
    } else {
      if (seg.doomed_ms != 0) marks.emplace_back(seg.seq, 0);  // referenced again
      if (seg.data_bytes > 0 &&
          static_cast<double>(l) < options_.rewrite_live_ratio * static_cast<double>(seg.data_bytes)) {
        sparse_.push_back(&seg);
      }
    }
  }
  PBD_RETURN_IF_ERROR(v_.index_->set_doomed(marks));
  std::sort(sparse_.begin(), sparse_.end(),
            [&](auto* a, auto* b) { return live_[a->seq] * b->data_bytes < live_[b->seq] * a->data_bytes; });
  // The references of the segments step 6 will rewrite (the same budget
  // walk), from the rows of paged layers.
  std::set<uint64_t> chosen;
  uint64_t budget = options_.max_rewrite_bytes;
  for (const auto* seg : sparse_) {
    if (live_[seg->seq] > budget) break;
    budget -= live_[seg->seq];
    chosen.insert(seg->seq);
  }
  if (chosen.empty()) return Status::OK();
  for (uint64_t id : paged_) {
    PBD_RETURN_IF_ERROR(v_.index_->scan_layer(id, [&](const meta::MappedExtent& x) {
      if (x.state == ExtentState::kData && chosen.count(x.seq)) refs_[x.seq].push_back({id, x.lba, x.nblocks});
    }));
  }
  return Status::OK();
}

// 6.
Status GarbageCollector::rewrite_sparse_segments() {
  uint64_t budget = options_.max_rewrite_bytes;
  for (const auto* seg : sparse_) {
    if (live_[seg->seq] > budget) break;
    budget -= live_[seg->seq];
    {
      FlushPipeline::UploadLock upload_lock(v_.pipeline_);
      PBD_RETURN_IF_ERROR(rewrite_segment(seg->seq, refs_[seg->seq]));
      // Now unreferenced: doomed from this moment.
      PBD_RETURN_IF_ERROR(v_.index_->set_doomed(seg->seq, now_unix_ms_));
    }
    report_.segments_doomed++;
    report_.segments_waiting++;
    changed_ = true;
  }
  return Status::OK();
}

Status GarbageCollector::rewrite_segment(uint64_t seq, const std::vector<SegmentRef>& refs) {
  struct Move {
    std::shared_ptr<Layer> layer;
    uint64_t new_seq = 0;
    std::vector<Piece> pieces;
  };
  std::map<uint64_t, Move> moves;  // by layer id
  Status read_index;
  // Re-check under the engine mutex at a quiet moment: only ranges still
  // mapped to `seq` move, and the new sequence numbers are above every
  // pending write.
  auto quiet = v_.pipeline_.quiet_seqs(0, [&] {
    v_.layers_.mu().assert_held();  // quiet_seqs runs this under the engine mutex
    for (const auto& ref : refs) {
      auto layer = v_.layers_.find_locked(ref.layer);
      if (!layer || !read_index.ok()) continue;
      read_index = layer->visit(ref.lba, ref.nblocks, [&](uint64_t lba, uint64_t n, const BlockSource& src) {
        if (src.state != ExtentState::kData || src.buffered() || src.seq != seq) return;
        Move& m = moves[ref.layer];
        m.layer = layer;
        m.pieces.emplace_back(lba, n, src);
      });
    }
    if (!read_index.ok()) return;
    for (auto& [id, m] : moves) m.new_seq = v_.pipeline_.take_seqs_locked(1);
  });
  if (!quiet.ok()) return quiet.status();
  PBD_RETURN_IF_ERROR(read_index.With("gc rewrite of segment " + std::to_string(seq)));

  for (auto& [id, m] : moves) {
    SegmentBuilder builder(m.new_seq, id, v_.opts_.codec, now_unix_ms());
    builder.set_writes(0, v_.pipeline_.writer());  // no new writes: old blocks moved
    for (const auto& [lba, n, src] : m.pieces) {
      auto frame = v_.load_frame(seq, src.frame);
      if (!frame.ok()) return frame.status().With("gc rewrite of segment " + std::to_string(seq));
      builder.add_data(lba, std::span<const std::byte>(frame->bytes.data() + src.block_in_frame * uint64_t{kBlockSize},
                                                       n * kBlockSize));
    }
    auto object = std::make_shared<const std::vector<std::byte>>(builder.finish());
    const SegmentFooter& footer = builder.footer();
    const std::string key = segment_key(m.new_seq);
    // Checked before the PUT and confirmed after it, as any segment (U6, U7).
    PBD_RETURN_IF_ERROR(v_.pipeline_.store_segment(key, object).With("gc"));
    PBD_RETURN_IF_ERROR(v_.pipeline_.confirm_writer("gc: confirm " + key + " before committing it"));
    PBD_RETURN_IF_ERROR(v_.index_->apply_segment(footer, object->size()).With("gc index " + key));
    MutexLock lock(&v_.layers_.mu());
    v_.layers_.layer_changed_locked(*m.layer);  // a base holding the old places is dropped
    for (const auto& e : footer.entries) {
      BlockSource src;
      src.state = ExtentState::kData;
      src.seq = m.new_seq;
      src.frame = footer.frames[e.frame];
      src.block_in_frame = e.block_in_frame;
      m.layer->assign(e.lba, e.nblocks, src);
    }
    report_.bytes_rewritten += footer.data_bytes();
  }
  report_.segments_rewritten++;
  return Status::OK();
}

// An ephemeral volume's layers hold the buffers writes arrived in, and a
// buffer lives while any block of it is mapped: a 1 MiB write overwritten
// but for one block still holds 1 MiB. Buffers whose mapped share is below
// rewrite_live_ratio get their mapped blocks copied into buffers of their
// own, so the old one is freed once readers let go of it.
void GarbageCollector::compact_buffers() {
  struct Use {
    std::shared_ptr<const std::vector<std::byte>> buffer;  // pinned: its address stays its own
    uint64_t mapped_bytes = 0;
    std::vector<std::pair<std::shared_ptr<Layer>, uint64_t>> refs;  // (layer, first block of an extent)
  };
  std::map<const std::vector<std::byte>*, Use> uses;
  {
    MutexLock lock(&v_.layers_.mu());
    v_.layers_.for_each_held_locked([&](const std::shared_ptr<Layer>& layer) {
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
  uint64_t budget = options_.max_rewrite_bytes;
  for (const auto& [raw, use] : uses) {
    if (static_cast<double>(use.mapped_bytes) >= options_.rewrite_live_ratio * static_cast<double>(raw->size())) {
      continue;
    }
    if (use.mapped_bytes > budget) break;
    budget -= use.mapped_bytes;
    MutexLock lock(&v_.layers_.mu());
    for (const auto& [layer, lba] : use.refs) {
      // Writes may have replaced the extent meanwhile: copy only what still
      // maps to this buffer, exactly as it was found.
      auto it = layer->map.entries().find(lba);
      if (it == layer->map.entries().end() || it->second.value.bytes != use.buffer) continue;
      const uint64_t nblocks = it->second.length;
      const std::byte* from = use.buffer->data() + it->second.value.byte_offset;
      BlockSource copy;
      copy.state = ExtentState::kData;
      copy.bytes = v_.make_block_buffer(std::vector<std::byte>(from, from + nblocks * kBlockSize));
      copy.private_to = layer->id;                       // only this layer's map refers to the copy
      v_.layers_.layer_changed_locked(*layer);           // nor may the base keep the old buffer alive
      layer->map.assign(lba, nblocks, std::move(copy));  // the same blocks: data_bytes unchanged
      report_.bytes_rewritten += nblocks * kBlockSize;
    }
    report_.buffers_compacted++;
  }
}

// 7. Before deleting anything: the checkpoint that no longer needs the
// deleted segments must be stored first.
Status GarbageCollector::checkpoint_before_deleting() {
  if (!(changed_ || !deletable_.empty()) || v_.opts_.ephemeral) return Status::OK();
  FlushPipeline::UploadLock upload_lock(v_.pipeline_);
  auto ckpt = v_.checkpointer_.take_locked();
  if (!ckpt.ok()) return ckpt.status().With("gc checkpoint");
  report_.checkpoint_seq = *ckpt;
  return Status::OK();
}

// 8. No lock needed: nothing references these segments, and the checkpoint
// that no longer needs them is stored.
Status GarbageCollector::delete_expired_segments() {
  // Nothing is deleted that a roots record this index has not seen could
  // reach (another writer moved the volume on).
  if (!deletable_.empty()) PBD_RETURN_IF_ERROR(v_.storage_roots_current().With("gc"));
  std::unordered_set<uint64_t> deleted;
  auto delete_all = [&]() -> Status {
    for (uint64_t seq : deletable_) {
      const std::string key = segment_key(seq);
      // Each deletion, however long the list: a writer that lost the volume
      // meanwhile deletes nothing more.
      PBD_RETURN_IF_ERROR(v_.pipeline_.confirm_writer("gc delete " + key));
      auto info = v_.store_->head(key);
      PBD_RETURN_IF_ERROR(v_.store_->remove(key).With("gc delete " + key));
      deleted.insert(seq);
      PBD_RETURN_IF_ERROR(v_.index_->forget_segment(seq));
      report_.segments_deleted++;
      if (info.ok()) report_.bytes_deleted += info->size;
    }
    return Status::OK();
  };
  const Status st = delete_all();
  // Also when a deletion failed: the segments already gone leave the disk cache.
  if (v_.disk_cache_ != nullptr) report_.cached_frames_dropped = v_.disk_cache_->drop_segments(deleted);
  return st;
}

// 9.
Status GarbageCollector::checkpoint_if_due() {
  if (report_.checkpoint_seq != 0 || options_.checkpoint_after_seqs == 0 || v_.opts_.ephemeral) return Status::OK();
  uint64_t last = 0;
  if (auto v = v_.index_->get_meta("checkpoint_seq"); v.ok() && v->has_value()) last = std::stoull(**v);
  uint64_t head;
  {
    MutexLock lock(&v_.layers_.mu());
    head = v_.pipeline_.next_seq_locked() - 1;
  }
  if (head < last + options_.checkpoint_after_seqs) return Status::OK();
  FlushPipeline::UploadLock upload_lock(v_.pipeline_);
  auto ckpt = v_.checkpointer_.take_locked();
  if (!ckpt.ok()) return ckpt.status().With("gc checkpoint");
  report_.checkpoint_seq = *ckpt;
  return Status::OK();
}

}  // namespace portalbd
