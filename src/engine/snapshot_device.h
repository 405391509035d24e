// SnapshotDevice: a read-only BlockDevice showing one snapshot of a Volume.
// It holds the snapshot's top Layer, so the chain of layers it reads through
// stays alive (and readable) even if the snapshot is deleted meanwhile.
// Thread-safety: as Volume: every method is safe concurrently.
#pragma once

#include <memory>

#include "src/engine/volume.h"

namespace portalbd {

class SnapshotDevice final : public BlockDevice {
 public:
  SnapshotDevice(std::shared_ptr<Volume> volume, std::shared_ptr<Layer> top)
      : volume_(std::move(volume)), top_(std::move(top)) {}

  uint64_t size_bytes() const override { return volume_->size_bytes(); }
  bool read_only() const override { return true; }
  uint32_t preferred_block_size() const override { return volume_->preferred_block_size(); }
  Status read(uint64_t offset, std::span<std::byte> out) override {
    return volume_->read_view(top_.get(), offset, out);
  }
  Status read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) override {
    return volume_->read_view(top_.get(), offset, out, extents);
  }
  Status write(uint64_t, std::span<const std::byte>, bool) override { return read_only_error(); }
  Status trim(uint64_t, uint64_t, bool) override { return read_only_error(); }
  Status write_zeroes(uint64_t, uint64_t, bool) override { return read_only_error(); }
  Status flush() override { return Status::OK(); }  // nothing to make durable
  bool flush_is_free() const override { return true; }
  bool reads_from_memory() const override { return volume_->reads_from_memory(); }
  bool read_if_cached(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) override {
    return volume_->read_view_if_cached(top_.get(), offset, out, extents);
  }
  Status block_status(uint64_t offset, uint64_t length, size_t max_extents, std::vector<StatusExtent>* out) override {
    return volume_->block_status_view(top_.get(), offset, length, max_extents, out);
  }

 private:
  static Status read_only_error() { return Status::ReadOnly("snapshot exports are read-only"); }

  const std::shared_ptr<Volume> volume_;
  const std::shared_ptr<Layer> top_;
};

}  // namespace portalbd
