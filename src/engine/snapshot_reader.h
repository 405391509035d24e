// SnapshotReader: one snapshot of a volume, served read-only from storage
// that another process (the volume's one writer, perhaps on another host)
// keeps changing: `portalbd --serve-snapshot NAME`. Any number of readers may
// run at once, beside the writer.
//
// It holds no writer lease and never writes to the store: it opens a Volume
// with VolumeOptions::read_only (no manifest created, nothing quarantined, no
// checkpoint, roots record, GC or journal) whose index is a private cache in
// `index_dir`, rebuilt from storage (newest checkpoint, segments, newest roots
// record) at every load, and shows the snapshot's layers through it.
//
// Why that is safe without the lease (docs/design.md, "Read-only snapshot
// readers"): a snapshot's layers are frozen; the writer only ever adds
// segments and records, and GC deletes a segment only once no root reaches
// it, after a checkpoint that no longer needs it. What the writer does change
// under a loaded reader:
//   * objects vanish between a LIST and a GET (a pruned checkpoint or roots
//     record, a segment GC deleted): a load that fails is retried from a
//     fresh listing, up to open_attempts times, then fails naming the error;
//   * GC rewrites a sparse segment: the snapshot's blocks move to a new one
//     and the old one is deleted after the grace period. A read that finds
//     an object gone (kNotFound) reloads the snapshot once and reads again
//     from the new map;
//   * the snapshot is deleted: after GC its segments go. The reload finds no
//     such snapshot; the read fails with kIOError naming the object and the
//     deletion, as does every later read of a segment that is gone. Never
//     zeros, never other data: segment keys are never reused, and frames
//     still in storage (or cached) are the snapshot's own bytes.
// Start readers once `snapshot create` has answered: the writer stores the
// record naming the snapshot before the snapshot's last segments, so a load
// in between would miss those writes.
//
// Thread-safety: every method is safe concurrently. mu_ guards the current
// load (a shared_ptr swapped whole); reload_mu_ (outer) makes one reload at
// a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "src/engine/volume.h"
#include "src/util/mutex.h"

namespace portalbd {

struct SnapshotReaderOptions {
  std::string snapshot;
  // How the volume is opened; read_only is forced on, and index_path is
  // chosen in index_dir (no lease, repair or journal may be set).
  VolumeOptions volume;
  // Where the private index caches live (reader-<generation>.sqlite). Those
  // an earlier reader left are removed at open. REQUIRES: not empty.
  std::string index_dir;
  int open_attempts = 5;
  int64_t retry_delay_ms = 200;
};

struct SnapshotReaderStats {
  SnapshotInfo snapshot;
  uint64_t loads = 0;          // successful loads (the first, then reloads)
  uint64_t load_failures = 0;  // attempts that failed (and were retried or reported)
  bool deleted = false;        // a reload found the snapshot gone from storage
};

class SnapshotReader final : public BlockDevice {
 public:
  // Loads `opts.snapshot` from storage. kNotFound when storage holds no
  // volume or no such snapshot; the last error after open_attempts failures.
  static Result<std::shared_ptr<SnapshotReader>> Open(std::shared_ptr<ObjectStore> store, SnapshotReaderOptions opts);
  ~SnapshotReader() override;

  uint64_t size_bytes() const override { return size_bytes_; }
  bool read_only() const override { return true; }
  uint32_t preferred_block_size() const override { return kBlockSize; }
  Status read(uint64_t offset, std::span<std::byte> out) override;
  Status read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) override;
  Status write(uint64_t, std::span<const std::byte>, bool) override { return refusal(); }
  Status trim(uint64_t, uint64_t, bool) override { return refusal(); }
  Status write_zeroes(uint64_t, uint64_t, bool) override { return refusal(); }
  Status flush() override { return Status::OK(); }  // nothing to make durable
  bool flush_is_free() const override { return true; }
  Status block_status(uint64_t offset, uint64_t length, size_t max_extents, std::vector<StatusExtent>* out) override;

  // The volume of the current load (its stats, its view of the snapshots).
  std::shared_ptr<Volume> volume();
  SnapshotReaderStats stats();
  const std::string& snapshot_name() const { return opts_.snapshot; }
  // Closes the current load; reads fail afterwards.
  void close();

 private:
  // One load: the volume opened read-only, the snapshot's device over it.
  struct Load;

  SnapshotReader(std::shared_ptr<ObjectStore> store, SnapshotReaderOptions opts);
  // One attempt at a load, into a new index file.
  Result<std::shared_ptr<Load>> load_once();
  // load_once() until it works, a permanent error, or open_attempts.
  Result<std::shared_ptr<Load>> load();
  std::shared_ptr<Load> current();
  // `op` on the current load; when it finds an object gone, reloads (unless
  // another read did since `op` started, or the snapshot is known deleted)
  // and runs it once more.
  Status with_reload(const std::function<Status(BlockDevice&)>& op);
  Status refusal() const;

  const std::shared_ptr<ObjectStore> store_;
  const SnapshotReaderOptions opts_;
  uint64_t size_bytes_ = 0;  // set by Open(), then only read
  Mutex reload_mu_;          // before mu_
  Mutex mu_;
  std::shared_ptr<Load> current_ GUARDED_BY(mu_);
  std::atomic<uint64_t> next_generation_{0};  // names each load's index file
  std::atomic<uint64_t> loads_{0}, load_failures_{0};
  std::atomic<bool> deleted_{false};
};

}  // namespace portalbd
