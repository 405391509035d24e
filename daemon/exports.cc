#include "daemon/exports.h"

#include <ctime>

#include "src/util/clock.h"

namespace portalbd {
std::string VolumeExports::snapshot_part(const std::string& name) const {
  if (name.size() <= name_.size() + 1 || name.compare(0, name_.size(), name_) != 0 || name[name_.size()] != '@') {
    return {};
  }
  return name.substr(name_.size() + 1);
}

std::vector<nbd::ExportInfo> VolumeExports::list_exports() {
  std::vector<nbd::ExportInfo> out{{name_, describe_export(name_)}};
  if (auto snaps = volume_->list_snapshots(); snaps.ok()) {
    for (const auto& s : *snaps) {
      out.push_back(
          {name_ + "@" + s.name, "read-only snapshot '" + s.name + "' taken " + rfc3339_utc(s.created_unix_ms)});
    }
  }
  return out;
}

Result<std::shared_ptr<BlockDevice>> VolumeExports::open_export(const std::string& name) {
  if (name == name_) return std::shared_ptr<BlockDevice>(volume_);
  std::string snap = snapshot_part(name);
  if (snap.empty()) return Status::NotFound("no export named '" + name + "'");
  return volume_->open_snapshot(snap);
}

std::string VolumeExports::describe_export(const std::string& name) {
  if (name == name_) return "portalbd live volume (" + volume_->storage_url() + ")";
  std::string snap = snapshot_part(name);
  if (snap.empty()) return {};
  auto info = volume_->find_snapshot(snap);
  if (!info.ok()) return {};
  return "read-only snapshot '" + snap + "' taken " + rfc3339_utc(info->created_unix_ms);
}

Result<std::shared_ptr<BlockDevice>> SnapshotReaderExports::open_export(const std::string& name) {
  if (name == name_ || name == name_ + "@" + reader_->snapshot_name()) return std::shared_ptr<BlockDevice>(reader_);
  return Status::NotFound("no export named '" + name + "' (this portalbd serves only snapshot '" +
                          reader_->snapshot_name() + "', as '" + name_ + "')");
}

std::string SnapshotReaderExports::describe_export(const std::string& name) {
  if (name != name_ && name != name_ + "@" + reader_->snapshot_name()) return {};
  const SnapshotInfo info = reader_->stats().snapshot;
  return "read-only snapshot '" + info.name + "' taken " + rfc3339_utc(info.created_unix_ms) + " (snapshot reader)";
}

}  // namespace portalbd
