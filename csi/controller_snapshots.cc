// The snapshot RPCs of the Controller service: CreateSnapshot,
// DeleteSnapshot, ListSnapshots (see controller_service.h).
#include "csi/assign_or_return.h"
#include "csi/capabilities.h"
#include "csi/controller_helpers.h"
#include "csi/controller_service.h"
#include "csi/volume_access.h"
#include "src/log/log.h"

namespace portalbd::csi {

using namespace ::csi::v1;
using namespace controller_detail;
using grpc::StatusCode;

namespace {

void fill_snapshot(const SnapshotRecord& s, Snapshot* out) {
  out->set_snapshot_id(s.id);
  out->set_source_volume_id(s.volume_id);
  out->set_size_bytes(static_cast<int64_t>(s.size_bytes));
  set_time(s.created_unix_ms, out->mutable_creation_time());
  out->set_ready_to_use(true);  // O(1) snapshots are complete when taken
}

}  // namespace

grpc::Status ControllerService::CreateSnapshot(grpc::ServerContext*, const CreateSnapshotRequest* req,
                                               CreateSnapshotResponse* out) {
  const auto secrets = call_secrets(req->secrets());
  if (!secrets.ok()) return to_grpc(secrets.status());
  if (req->name().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "CreateSnapshot needs a name");
  if (req->source_volume_id().empty()) {
    return grpc_error(StatusCode::INVALID_ARGUMENT, "CreateSnapshot needs a source_volume_id");
  }
  std::string busy;
  auto hold = locks_.try_hold({"snapname:" + req->name(), "vol:" + req->source_volume_id()}, &busy);
  if (!hold) return pending(busy);
  auto existing_id = registry_.snapshot_id_by_name(req->name());
  if (!existing_id.ok()) return to_grpc(existing_id.status());
  SnapshotRecord rec;
  if (*existing_id) {
    auto existing = registry_.snapshot(**existing_id);
    if (!existing.ok()) return to_grpc(existing.status());
    std::string vol, engine;
    split_snapshot_id(**existing_id, &vol, &engine);
    if (vol != req->source_volume_id()) {
      return grpc_error(StatusCode::ALREADY_EXISTS,
                        "snapshot '" + req->name() + "' exists as " + **existing_id + ", of another volume");
    }
    if (*existing) {
      fill_snapshot(**existing, out->mutable_snapshot());
      return grpc::Status::OK;
    }
    rec.id = **existing_id;  // a create stopped half way: finish it
    rec.engine_name = engine;
  }
  if (!plausible_volume_id(req->source_volume_id())) {
    return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->source_volume_id());
  }
  auto vol = registry_.volume(req->source_volume_id());
  if (!vol.ok()) return to_grpc(vol.status());
  if (!*vol || (*vol)->deleted) return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->source_volume_id());
  if ((*vol)->snapshot_reader) {
    // Its content is a snapshot already; a second record of the same engine
    // snapshot would need counting who deletes it last.
    return grpc_error(StatusCode::INVALID_ARGUMENT,
                      "volume " + (*vol)->id + " is a read-only view of snapshot " + (*vol)->source_snapshot_id +
                          ", which already holds its content: make volumes from that snapshot instead");
  }
  if (rec.id.empty()) {
    rec.engine_name = new_engine_snapshot_name();
    rec.id = (*vol)->id + "@" + rec.engine_name;
    if (Status st = registry_.put_snapshot_name(req->name(), rec.id); !st.ok()) return to_grpc(st);
  }
  rec.name = req->name();
  rec.volume_id = (*vol)->id;

  VolumeAccess::OpenOptions o = open_options(**vol, *secrets);
  o.mailbox_timeout_ms = options_.mailbox_timeout_ms;
  auto va = VolumeAccess::Open(o);
  if (!va.ok()) return to_grpc(va.status().With("snapshot volume " + rec.volume_id));
  auto taken = (*va)->create_snapshot(rec.engine_name);
  if (!taken.ok()) return to_grpc(taken.status().With("snapshot volume " + rec.volume_id));
  if (Status st = (*va)->close(); !st.ok()) return to_grpc(st);
  rec.size_bytes = taken->size_bytes;
  rec.created_unix_ms = taken->created_unix_ms;
  if (Status st = registry_.put_snapshot(rec); !st.ok()) return to_grpc(st);
  log::get("csi")->info("created snapshot name={} id={} via={}", log::quote(rec.name), rec.id,
                        (*va)->via_mailbox()  ? "mailbox"
                        : (*va)->via_daemon() ? "daemon"
                                              : "engine");
  fill_snapshot(rec, out->mutable_snapshot());
  return grpc::Status::OK;
}

grpc::Status ControllerService::DeleteSnapshot(grpc::ServerContext*, const DeleteSnapshotRequest* req,
                                               DeleteSnapshotResponse*) {
  const auto secrets = call_secrets(req->secrets());
  if (!secrets.ok()) return to_grpc(secrets.status());
  if (req->snapshot_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "DeleteSnapshot needs a snapshot_id");
  std::string vol_id, engine;
  if (!split_snapshot_id(req->snapshot_id(), &vol_id, &engine)) return grpc::Status::OK;
  std::string busy;
  auto hold = locks_.try_hold({"vol:" + vol_id}, &busy);
  if (!hold) return pending(busy);
  auto rec = registry_.snapshot(req->snapshot_id());
  if (!rec.ok()) return to_grpc(rec.status());
  if (!*rec || (*rec)->deleted) return grpc::Status::OK;  // deleted: kept only for its readers
  SnapshotRecord snap = **rec;
  auto readers = readers_of(snap.id);
  if (!readers.ok()) return to_grpc(readers.status());
  if (!readers->empty()) {
    // Snapshot reader volumes serve it: hide it (name freed, not listed,
    // no new volume from it) and keep the engine snapshot until the last
    // of them is deleted (delete_reader_volume). The name goes first, so a
    // crash in between leaves a listed snapshot, never a hidden one named.
    auto named = registry_.snapshot_id_by_name(snap.name);
    if (named.ok() && *named && **named == snap.id) {
      if (Status st = registry_.remove_snapshot_name(snap.name); !st.ok()) return to_grpc(st);
    }
    snap.deleted = true;
    if (Status st = registry_.put_snapshot(snap); !st.ok()) return to_grpc(st);
    log::get("csi")->info("deleted snapshot id={} (kept for {} reader volume(s), first {})", snap.id, readers->size(),
                          readers->front());
    return grpc::Status::OK;
  }
  if (Status st = drop_snapshot(snap, *secrets); !st.ok()) return to_grpc(st);
  log::get("csi")->info("deleted snapshot id={}", req->snapshot_id());
  return grpc::Status::OK;
}

Status ControllerService::drop_snapshot(const SnapshotRecord& snap, const CallSecrets& secrets) {
  CSI_ASSIGN_OR_RETURN(auto vol, registry_.volume(snap.volume_id));
  if (vol) {
    VolumeAccess::OpenOptions o = open_options(*vol, secrets);
    o.mailbox_timeout_ms = options_.mailbox_timeout_ms;
    auto va = VolumeAccess::Open(o);
    if (va.ok()) {
      PBD_RETURN_IF_ERROR((*va)->delete_snapshot(snap.engine_name));
      PBD_RETURN_IF_ERROR((*va)->close());
    } else if (!va.status().is(Status::Code::kNotFound)) {
      return va.status().With("delete snapshot " + snap.id);
    }
  }
  CSI_ASSIGN_OR_RETURN(auto named, registry_.snapshot_id_by_name(snap.name));
  if (named && *named == snap.id) PBD_RETURN_IF_ERROR(registry_.remove_snapshot_name(snap.name));
  PBD_RETURN_IF_ERROR(registry_.remove_snapshot(snap.id));
  // The last snapshot of a deleted volume takes the volume's storage with it.
  if (vol && vol->deleted) {
    CSI_ASSIGN_OR_RETURN(auto snaps, registry_.snapshots());
    bool more = false;
    for (const auto& s : snaps) more |= s.volume_id == snap.volume_id;
    if (!more) PBD_RETURN_IF_ERROR(destroy_volume(*vol, secrets));
  }
  return Status::OK();
}

grpc::Status ControllerService::ListSnapshots(grpc::ServerContext*, const ListSnapshotsRequest* req,
                                              ListSnapshotsResponse* out) {
  if (req->max_entries() < 0) return grpc_error(StatusCode::INVALID_ARGUMENT, "max_entries is negative");
  std::vector<SnapshotRecord> picked;
  if (!req->snapshot_id().empty()) {
    std::string v, e;
    if (split_snapshot_id(req->snapshot_id(), &v, &e)) {
      auto rec = registry_.snapshot(req->snapshot_id());
      if (!rec.ok()) return to_grpc(rec.status());
      if (*rec && !(*rec)->deleted &&
          (req->source_volume_id().empty() || (*rec)->volume_id == req->source_volume_id())) {
        picked.push_back(**rec);
      }
    }
  } else {
    auto all = registry_.snapshots();
    if (!all.ok()) return to_grpc(all.status());
    for (auto& s : *all) {
      if (s.deleted) continue;  // kept only for its reader volumes
      if (req->source_volume_id().empty() || s.volume_id == req->source_volume_id()) picked.push_back(std::move(s));
    }
  }
  auto start = parse_token(req->starting_token(), picked.size());
  if (!start.ok()) return token_error(start.status());
  size_t end = picked.size();
  if (req->max_entries() > 0) end = std::min(end, *start + static_cast<size_t>(req->max_entries()));
  for (size_t i = *start; i < end; ++i) fill_snapshot(picked[i], out->add_entries()->mutable_snapshot());
  if (end < picked.size()) out->set_next_token(std::to_string(end));
  return grpc::Status::OK;
}

}  // namespace portalbd::csi
