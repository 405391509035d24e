// VolumeExports: the ExportProvider over one volume (SnapshotReaderExports:
// over one snapshot a reader serves). The live volume is the
// configured export name; every snapshot is also a read-only export named
// "<export>@<snapshot>", listed by NBD_OPT_LIST with a description.
// Thread-safety: safe from every connection thread (the Volume is).
#pragma once

#include <memory>
#include <string>

#include "nbd/export_provider.h"
#include "src/engine/snapshot_reader.h"
#include "src/engine/volume.h"

namespace portalbd {

class VolumeExports final : public nbd::ExportProvider {
 public:
  VolumeExports(std::string export_name, std::shared_ptr<Volume> volume)
      : name_(std::move(export_name)), volume_(std::move(volume)) {}

  std::vector<nbd::ExportInfo> list_exports() override;
  std::string default_export() override { return name_; }
  Result<std::shared_ptr<BlockDevice>> open_export(const std::string& name) override;
  std::string describe_export(const std::string& name) override;

 private:
  // "portalbd@before-disaster" -> "before-disaster"; "" when not a snapshot export.
  std::string snapshot_part(const std::string& name) const;

  const std::string name_;
  const std::shared_ptr<Volume> volume_;
};

// The ExportProvider of a snapshot reader (--serve-snapshot): the one
// snapshot, read-only, under the configured export name and under
// "<export>@<snapshot>" as a writer's daemon names it.
class SnapshotReaderExports final : public nbd::ExportProvider {
 public:
  SnapshotReaderExports(std::string export_name, std::shared_ptr<SnapshotReader> reader)
      : name_(std::move(export_name)), reader_(std::move(reader)) {}

  std::vector<nbd::ExportInfo> list_exports() override { return {{name_, describe_export(name_)}}; }
  std::string default_export() override { return name_; }
  Result<std::shared_ptr<BlockDevice>> open_export(const std::string& name) override;
  std::string describe_export(const std::string& name) override;

 private:
  const std::string name_;
  const std::shared_ptr<SnapshotReader> reader_;
};

}  // namespace portalbd
