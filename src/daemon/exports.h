// VolumeExports: the ExportProvider that serves one live volume under the
// configured export name. Snapshot exports ("<export>@<snapshot>") join it
// with the snapshot work.
// Thread-safety: immutable after construction; safe from every connection.
#pragma once

#include <memory>
#include <string>

#include "nbd/export_provider.h"
#include "src/engine/volume.h"

namespace portalbd {

class VolumeExports final : public nbd::ExportProvider {
 public:
  VolumeExports(std::string export_name, std::shared_ptr<Volume> volume)
      : name_(std::move(export_name)), volume_(std::move(volume)) {}

  std::vector<nbd::ExportInfo> list_exports() override { return {{name_, describe_export(name_)}}; }
  std::string default_export() override { return name_; }
  Result<std::shared_ptr<BlockDevice>> open_export(const std::string& name) override {
    if (name != name_) return Status::NotFound("no export named '" + name + "'");
    return std::shared_ptr<BlockDevice>(volume_);
  }
  std::string describe_export(const std::string& name) override {
    if (name != name_) return {};
    return "portalbd live volume (" + volume_->storage_url() + ")";
  }

 private:
  const std::string name_;
  const std::shared_ptr<Volume> volume_;
};

}  // namespace portalbd
