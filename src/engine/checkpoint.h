// Checkpointer: index checkpoints of one Volume in its object storage
// (checkpoints/<seq>.sqlite.zst), taken by GC, `portalctl checkpoint`,
// repair and root changes that owe one, and restored at open when the local
// index is new or behind storage.
//
// A part of Volume (it uses the volume's index, store and flush pipeline);
// made only by Volume, one per volume.
#pragma once

#include <cstdint>
#include <string>

#include "src/engine/flush_pipeline.h"
#include "src/util/status.h"
#include "src/util/thread_annotations.h"

namespace portalbd {

class Volume;

class Checkpointer {
 public:
  Checkpointer(Volume& volume, FlushPipeline& pipeline) : v_(volume), pipeline_(pipeline) {}

  // Uploads pending data and stores a compressed copy of the index, at a
  // sequence number below which everything is committed. Takes the upload
  // lock.
  Result<uint64_t> take() EXCLUDES(pipeline_.upload_mu());
  // take() with the upload lock already held.
  Result<uint64_t> take_locked() REQUIRES(pipeline_.upload_mu());
  // Open: when the local index is new (fresh_index), starts it from the
  // newest whole checkpoint in storage instead of replaying every segment.
  // A damaged checkpoint is quarantined with a warning and the next older
  // one tried; with none left the index starts empty and replay rebuilds it
  // from segments alone.
  Status restore_if_fresh(bool fresh_index);
  // Replaces the index with checkpoint `key`. kCorruption when the object is
  // not a whole checkpoint of this volume at the sequence its key names; the
  // index is then left empty.
  Status restore(const std::string& key);

 private:
  Volume& v_;
  FlushPipeline& pipeline_;  // the volume's
};

}  // namespace portalbd
