// GarbageCollector: one GC pass over a Volume, one method per step.
//
// A pass (one at a time, under the volume's gc_mu_). Steps 1-6 run under the
// upload lock, so no upload or root change runs meanwhile; the lock is let
// go between rewrites and for the deletions, so a FLUSH waits for at most
// one rewrite, not for the whole pass:
//   1. upload whatever is sealed, so every segment's references are in maps;
//   2. drop layers that no root's chain reaches (e.g. a live layer discarded
//      by restore --discard-current);
//   3. merge each layer that no root names and that has exactly one child
//      into that child (what is left of a deleted snapshot): the child's
//      extents win, the parent's shadowed extents become garbage;
//   4. count live data bytes per segment over every layer still in memory,
//      including layers that only an open snapshot reader holds;
//   5. classify the index's segments: doom the unreferenced ones (they wait
//      grace_ms, so a read that resolved a location just before keeps
//      working), pick the sparse ones, and find those whose grace ended;
//   6. rewrite sparse segments (live share below rewrite_live_ratio), within
//      max_rewrite_bytes; ephemeral volumes compact buffers instead;
//   7. if anything changed, write a checkpoint (before any deletion);
//   8. delete the segments whose grace ended, once storage's roots record is
//      still the index's;
//   9. keep rebuilds short: a checkpoint once checkpoint_after_seqs sequence
//      numbers were used since the last one.
// An ephemeral volume (memory://) has no segments of its own: its layers map
// blocks to the buffers writes arrived in. Its passes drop and merge layers
// as above, compact buffers that are mostly overwritten instead of
// rewriting segments, and take no checkpoint: nothing can start from one
// once the process is gone.
//
// A part of Volume (it uses the volume's layers, pipeline and index); made
// by Volume::gc() for one pass.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "meta/index.h"
#include "src/engine/layer_set.h"
#include "src/engine/volume.h"

namespace portalbd {

class GarbageCollector {
 public:
  GarbageCollector(Volume& volume, const GcOptions& options);
  Result<GcReport> run();

 private:
  struct SegmentRef {
    uint64_t layer, lba, nblocks;
  };

  // Steps 1-5 run with the upload lock held throughout; 6-9 take it for
  // one rewrite or checkpoint at a time.
  Status upload_pending() REQUIRES(v_.pipeline_.upload_mu());              // 1
  Status drop_unreachable_layers() REQUIRES(v_.pipeline_.upload_mu());     // 2
  Status merge_rootless_layers() REQUIRES(v_.pipeline_.upload_mu());       // 3
  Status count_live_bytes() REQUIRES(v_.pipeline_.upload_mu());            // 4
  Status classify_segments() REQUIRES(v_.pipeline_.upload_mu());           // 5
  Status rewrite_sparse_segments() EXCLUDES(v_.pipeline_.upload_mu());     // 6
  Status checkpoint_before_deleting() EXCLUDES(v_.pipeline_.upload_mu());  // 7
  Status delete_expired_segments() EXCLUDES(v_.pipeline_.upload_mu());     // 8
  Status checkpoint_if_due() EXCLUDES(v_.pipeline_.upload_mu());           // 9

  // Storage's roots record still names what steps 2 and 3 drop or merge:
  // the index owes storage a checkpoint from the first change on, and
  // remembers that across a restart.
  Status owe_checkpoint() REQUIRES(v_.pipeline_.upload_mu());
  // Copies the blocks that layers still map to segment `seq` into new
  // segments (one per layer), so `seq` becomes unreferenced. Upload lock held.
  Status rewrite_segment(uint64_t seq, const std::vector<SegmentRef>& refs) REQUIRES(v_.pipeline_.upload_mu());
  // Ephemeral volumes: copies the mapped blocks of mostly overwritten write
  // buffers out of them. Takes the engine mutex.
  void compact_buffers();

  Volume& v_;
  const GcOptions options_;
  GcReport report_;
  bool changed_ = false;
  std::set<uint64_t> named_;           // layers a root names (step 2)
  std::map<uint64_t, uint64_t> live_;  // segment -> live data bytes (step 4)
  // segment -> extents mapping it: from resident layers in step 4, from paged
  // layers' rows in step 5 and only for the segments step 6 will rewrite
  // (so a pass holds references for at most max_rewrite_bytes, not one per
  // extent of the volume).
  std::map<uint64_t, std::vector<SegmentRef>> refs_;
  std::vector<uint64_t> paged_;                     // held layers counted from their rows (step 4)
  std::vector<meta::SegmentRecord> segments_;       // the index's (step 5)
  std::vector<const meta::SegmentRecord*> sparse_;  // to rewrite, sparsest first (step 5)
  std::vector<uint64_t> deletable_;                 // grace ended (step 5)
  int64_t now_unix_ms_ = 0;
};

}  // namespace portalbd
