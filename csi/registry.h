// Registry: what the CSI driver knows about the volumes and snapshots it
// made, kept as small JSON objects in object storage beside the volumes
// (under `_csi/` of the driver's --storage-url), so a controller restarted on
// another machine, with an empty state dir, finds everything again.
//
//   _csi/names/<hex of the CSI name>.json       {"volume_id": ...}
//   _csi/volumes/<volume id>.json               VolumeRecord
//   _csi/snapnames/<hex of the CSI name>.json   {"snapshot_id": ...}
//   _csi/snapshots/<snapshot id>.json           SnapshotRecord
//
// A volume id is `<the name, cleaned, at most 24 characters>-<8 random hex digits>`, so a name can
// be used again after its volume is deleted while the old volume's storage
// still holds snapshots (DeleteVolume of a volume with snapshots keeps its
// storage, marked deleted, until the last snapshot goes). A snapshot id is
// `<volume id>@<engine snapshot name>`. Ids never start with `_`, so no
// volume's prefix can be `_csi`.
//
// A snapshot reader volume (MULTI_NODE_READER_ONLY) has a VolumeRecord and
// no storage: it names its source volume's storage and the snapshot. A
// snapshot such volumes use is not deleted by DeleteSnapshot but marked
// `deleted` (name record removed), and goes with its last reader volume.
//
// Record order (what is durable before what): CreateVolume writes the
// volume's storage, then its VolumeRecord (state "ready"), then the name
// record; a name record therefore always names a complete volume. Deletes
// go the other way: the name record first, the storage, the VolumeRecord
// last, so an interrupted delete is finished by the next one.
//
// Thread-safety: every method may be called from many threads; callers
// serialize changes to one name themselves (the controller's mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/store/object_store.h"
#include "src/util/status.h"

namespace portalbd::csi {

struct VolumeRecord {
  std::string id;
  std::string name;         // the CSI name CreateVolume was given
  std::string storage_url;  // where the volume lives: <base>/<id>
  uint64_t capacity_bytes = 0;
  std::string source_snapshot_id;  // "" unless made from a snapshot
  std::string source_volume_id;    // "" unless cloned from a volume
  int64_t created_unix_ms = 0;
  // DeleteVolume ran while snapshots of it remained: hidden from
  // ListVolumes, storage kept for the snapshots.
  bool deleted = false;
  // A snapshot reader volume (MULTI_NODE_READER_ONLY): no storage of its
  // own. storage_url is the source volume's, source_snapshot_id the snapshot
  // it serves read-only (`portalbd --serve-snapshot`); deleting it removes
  // only this record (and the snapshot, when the user deleted it already
  // and this was its last reader).
  bool snapshot_reader = false;
};

struct SnapshotRecord {
  std::string id;    // <volume id>@<engine name>
  std::string name;  // the CSI name
  std::string volume_id;
  std::string engine_name;  // the snapshot's name inside the volume
  uint64_t size_bytes = 0;  // the volume's size when taken
  int64_t created_unix_ms = 0;
  // DeleteSnapshot ran while snapshot reader volumes still served it:
  // hidden (name freed, not listed, no new volume from it), the engine
  // snapshot kept until its last reader volume is deleted.
  bool deleted = false;
};

class Registry {
 public:
  explicit Registry(std::shared_ptr<ObjectStore> store) : store_(std::move(store)) {}

  // nullopt when the name has no volume.
  Result<std::optional<std::string>> volume_id_by_name(const std::string& name);
  Result<std::optional<VolumeRecord>> volume(const std::string& id);
  // Every record, the deleted ones included, sorted by id.
  Result<std::vector<VolumeRecord>> volumes();
  Status put_volume(const VolumeRecord& v);
  Status put_volume_name(const std::string& name, const std::string& id);
  Status remove_volume_name(const std::string& name);
  Status remove_volume(const std::string& id);

  Result<std::optional<std::string>> snapshot_id_by_name(const std::string& name);
  Result<std::optional<SnapshotRecord>> snapshot(const std::string& id);
  Result<std::vector<SnapshotRecord>> snapshots();  // sorted by id
  Status put_snapshot(const SnapshotRecord& s);
  Status put_snapshot_name(const std::string& name, const std::string& id);
  Status remove_snapshot_name(const std::string& name);
  Status remove_snapshot(const std::string& id);

 private:
  Result<std::optional<std::string>> get_text(const std::string& key);
  Status put_text(const std::string& key, const std::string& text);

  const std::shared_ptr<ObjectStore> store_;
};

// "pvc-1234" -> "pvc-1234-9f3c01aa": lower case letters, digits and '-' of
// the name (at most 24: unix socket paths under <state-dir>/volumes/<id>/ must
// fit in 108 bytes), a dash and 8 random hex digits.
std::string new_volume_id(const std::string& name);
// A fresh engine snapshot name, "csi-<16 hex digits>".
std::string new_engine_snapshot_name();
// True for ids this driver could have made: [a-z0-9-], 1-64 characters, not
// starting with '_' or '-'. Anything else is NOT_FOUND without a lookup.
bool plausible_volume_id(const std::string& id);
// Splits "<volume id>@<engine name>"; false when it is not that shape.
bool split_snapshot_id(const std::string& id, std::string* volume_id, std::string* engine_name);
// Lower-case hex of the bytes of `s` (names as keys).
std::string hex_encode(const std::string& s);

}  // namespace portalbd::csi
