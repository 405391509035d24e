// The CSI Controller service: volumes, snapshots, clones and expansion on
// object storage (docs/design.md, "The CSI driver").
//
// Each volume lives in its own prefix, <base>/<volume id>, where <base> is
// the driver's --storage-url or the StorageClass parameter `storageUrl`.
// The registry (registry.h), under <--storage-url>/_csi/, records names,
// volumes and snapshots. Operations on a volume go through VolumeAccess:
// its daemon's control socket when it runs on this host, the engine in
// this process otherwise, under the writer lease.
//
// Thread-safety: RPCs run concurrently. One that changes a volume, name or
// snapshot holds its keys in locks_ for its whole run; a second call on any
// of them is answered ABORTED at once (the sidecars retry), so a long copy
// holds up only calls on its own volumes. Reads take no lock: every registry
// record is one object, written whole.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "csi.grpc.pb.h"
#include "csi/capabilities.h"
#include "csi/op_locks.h"
#include "csi/registry.h"
#include "csi/volume_access.h"
#include "src/store/object_store.h"

namespace portalbd::csi {

struct ControllerOptions {
  std::string storage_url;  // default base of new volumes; the registry lives under it
  std::string state_dir;
  // Snapshot create/delete of a volume staged on another node go through the
  // storage mailbox (mailbox.h) and wait this long for that node; 0: refused.
  int mailbox_timeout_ms = 30000;
  // TLS to a daemon on this host, for a clone of a volume staged here.
  NbdTls tls;
};

class ControllerService final : public ::csi::v1::Controller::Service {
 public:
  // Opens the registry's store; kInvalidArgument for a URL no volume can use.
  static Result<std::unique_ptr<ControllerService>> Create(const ControllerOptions& options);

  grpc::Status CreateVolume(grpc::ServerContext*, const ::csi::v1::CreateVolumeRequest*,
                            ::csi::v1::CreateVolumeResponse*) override;
  grpc::Status DeleteVolume(grpc::ServerContext*, const ::csi::v1::DeleteVolumeRequest*,
                            ::csi::v1::DeleteVolumeResponse*) override;
  grpc::Status ValidateVolumeCapabilities(grpc::ServerContext*, const ::csi::v1::ValidateVolumeCapabilitiesRequest*,
                                          ::csi::v1::ValidateVolumeCapabilitiesResponse*) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const ::csi::v1::ListVolumesRequest*,
                           ::csi::v1::ListVolumesResponse*) override;
  grpc::Status GetCapacity(grpc::ServerContext*, const ::csi::v1::GetCapacityRequest*,
                           ::csi::v1::GetCapacityResponse*) override;
  grpc::Status ControllerGetCapabilities(grpc::ServerContext*, const ::csi::v1::ControllerGetCapabilitiesRequest*,
                                         ::csi::v1::ControllerGetCapabilitiesResponse*) override;
  grpc::Status CreateSnapshot(grpc::ServerContext*, const ::csi::v1::CreateSnapshotRequest*,
                              ::csi::v1::CreateSnapshotResponse*) override;
  grpc::Status DeleteSnapshot(grpc::ServerContext*, const ::csi::v1::DeleteSnapshotRequest*,
                              ::csi::v1::DeleteSnapshotResponse*) override;
  grpc::Status ListSnapshots(grpc::ServerContext*, const ::csi::v1::ListSnapshotsRequest*,
                             ::csi::v1::ListSnapshotsResponse*) override;
  grpc::Status ControllerExpandVolume(grpc::ServerContext*, const ::csi::v1::ControllerExpandVolumeRequest*,
                                      ::csi::v1::ControllerExpandVolumeResponse*) override;
  grpc::Status ControllerGetVolume(grpc::ServerContext*, const ::csi::v1::ControllerGetVolumeRequest*,
                                   ::csi::v1::ControllerGetVolumeResponse*) override;

 private:
  explicit ControllerService(ControllerOptions options, std::shared_ptr<ObjectStore> registry_store)
      : options_(std::move(options)), registry_(std::move(registry_store)) {}

  // Makes the new volume's storage, copying from its source when it has one.
  // `secrets`: the call's storage settings and encryption key
  // (call_secrets()); a source volume is opened with the same key.
  Status build_volume(const VolumeRecord& rec, const ::csi::v1::VolumeContentSource& source,
                      const CallSecrets& secrets);
  // Removes a volume's storage and record; the caller checked nothing holds it.
  Status destroy_volume(const VolumeRecord& rec, const CallSecrets& secrets);
  // Deletes snapshot `snap` for real: the engine snapshot, its name and
  // record, and the storage of its volume when that was deleted and this
  // was its last snapshot. REQUIRES: the caller holds "vol:<snap.volume_id>"
  // and no snapshot reader volume uses it.
  Status drop_snapshot(const SnapshotRecord& snap, const CallSecrets& secrets);
  // The snapshot reader volumes serving snapshot `snapshot_id`, but `except`.
  Result<std::vector<std::string>> readers_of(const std::string& snapshot_id, const std::string& except = "");
  // DeleteVolume of a snapshot reader volume: its record, and its snapshot
  // when the user deleted that already and this was its last reader.
  Status delete_reader_volume(const VolumeRecord& rec, const CallSecrets& secrets);
  void fill_volume(const VolumeRecord& rec, ::csi::v1::Volume* out);
  // How to open volume `rec` with the call's secrets from this driver's state
  // dir; callers add what is particular to them (create, grow, mailbox).
  VolumeAccess::OpenOptions open_options(const VolumeRecord& rec, const CallSecrets& secrets) const;

  const ControllerOptions options_;
  Registry registry_;
  OpLocks locks_;
};

}  // namespace portalbd::csi
