#include "csi/controller_service.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "csi/assign_or_return.h"
#include "csi/capabilities.h"
#include "csi/controller_helpers.h"
#include "csi/volume_access.h"
#include "src/log/log.h"

namespace portalbd::csi {

using namespace ::csi::v1;
using namespace controller_detail;
using grpc::StatusCode;

namespace {

constexpr const char* kStorageUrlParam = "storageUrl";

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t round_up_to_block(uint64_t bytes) { return (bytes + kCsiBlockBytes - 1) / kCsiBlockBytes * kCsiBlockBytes; }

// The size a CapacityRange asks for: the required bytes rounded up to the
// block size (never down), the default when nothing is required (cut to the
// limit, in whole blocks). Out of range when the limit leaves no room for it.
Result<uint64_t> size_for(const CapacityRange* range, uint64_t minimum) {
  int64_t required = range != nullptr ? range->required_bytes() : 0;
  int64_t limit = range != nullptr ? range->limit_bytes() : 0;
  if (required < 0 || limit < 0) return Status::InvalidArgument("capacity_range has a negative size");
  if (limit != 0 && limit < required) {
    return Status::InvalidArgument("capacity_range limit_bytes " + std::to_string(limit) + " is below required_bytes " +
                                   std::to_string(required));
  }
  // Nothing asked for: the source's size (a restore or clone), else the default.
  uint64_t want = required != 0 ? static_cast<uint64_t>(required) : (minimum != 0 ? minimum : kDefaultCapacityBytes);
  if (want < minimum) want = minimum;
  if (required == 0 && limit != 0 && want > static_cast<uint64_t>(limit)) {
    // Any size up to the limit will do: the most whole blocks under it (limit
    // 5000 is 4096, not 8192 over it), never less than the source.
    want = std::max(minimum, static_cast<uint64_t>(limit) / kCsiBlockBytes * kCsiBlockBytes);
  }
  uint64_t size = round_up_to_block(want);
  if (size == 0) size = kCsiBlockBytes;
  if (limit != 0 && size > static_cast<uint64_t>(limit)) {
    return Status::OutOfRange("no size of whole " + std::to_string(kCsiBlockBytes) + "-byte blocks of at least " +
                              std::to_string(want) + " bytes fits under limit_bytes " + std::to_string(limit));
  }
  if (size > kMaxCapacityBytes) return Status::OutOfRange("volumes are at most 1 EiB");
  return size;
}

bool fits(uint64_t size, const CapacityRange* range) {
  if (range == nullptr) return true;
  if (range->required_bytes() > 0 && size < static_cast<uint64_t>(range->required_bytes())) return false;
  if (range->limit_bytes() > 0 && size > static_cast<uint64_t>(range->limit_bytes())) return false;
  return true;
}

grpc::Status check_capabilities(const google::protobuf::RepeatedPtrField<VolumeCapability>& caps) {
  if (caps.empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_capabilities is empty");
  for (const auto& c : caps) {
    std::string why = unsupported_reason(c);
    if (!why.empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, why);
  }
  return grpc::Status::OK;
}

}  // namespace

Result<std::unique_ptr<ControllerService>> ControllerService::Create(const ControllerOptions& options) {
  PBD_RETURN_IF_ERROR(check_storage_url(options.storage_url));
  auto store = open_object_store(options.storage_url);
  if (!store.ok()) return store.status().With("open storage " + options.storage_url);
  return std::unique_ptr<ControllerService>(new ControllerService(options, *store));
}

void ControllerService::fill_volume(const VolumeRecord& rec, ::csi::v1::Volume* out) {
  out->set_volume_id(rec.id);
  out->set_capacity_bytes(static_cast<int64_t>(rec.capacity_bytes));
  (*out->mutable_volume_context())[kStorageUrlContext] = rec.storage_url;
  std::string snap_volume, engine_name;
  if (rec.snapshot_reader && split_snapshot_id(rec.source_snapshot_id, &snap_volume, &engine_name)) {
    (*out->mutable_volume_context())[kReaderSnapshotContext] = engine_name;
  }
  if (!rec.source_snapshot_id.empty()) {
    out->mutable_content_source()->mutable_snapshot()->set_snapshot_id(rec.source_snapshot_id);
  } else if (!rec.source_volume_id.empty()) {
    out->mutable_content_source()->mutable_volume()->set_volume_id(rec.source_volume_id);
  }
}

Status ControllerService::build_volume(const VolumeRecord& rec, const VolumeContentSource& source,
                                       const CallSecrets& secrets) {
  // The source first: one the call cannot open (no key, a wrong one, in
  // use) stops the create before the target's storage is written.
  std::unique_ptr<VolumeAccess> src;
  std::string src_volume_id, engine_name;
  bool temporary = false;
  if (source.has_snapshot() || source.has_volume()) {
    if (source.has_snapshot()) {
      CSI_ASSIGN_OR_RETURN(auto snap, registry_.snapshot(source.snapshot().snapshot_id()));
      if (!snap) return Status::NotFound("no snapshot " + source.snapshot().snapshot_id());
      src_volume_id = snap->volume_id;
      engine_name = snap->engine_name;
    } else {
      src_volume_id = source.volume().volume_id();
      engine_name = "csi-clone-" + rec.id;
      temporary = true;
    }
    CSI_ASSIGN_OR_RETURN(auto src_rec, registry_.volume(src_volume_id));
    if (!src_rec) return Status::NotFound("no volume " + src_volume_id);
    if (src_rec->snapshot_reader) {  // a clone of a snapshot reader volume: a copy of its snapshot
      if (!split_snapshot_id(src_rec->source_snapshot_id, &src_volume_id, &engine_name)) {
        return Status::Corruption("snapshot reader volume " + src_rec->id + " names no snapshot");
      }
      temporary = false;
      CSI_ASSIGN_OR_RETURN(src_rec, registry_.volume(src_volume_id));
      if (!src_rec) return Status::NotFound("no volume " + src_volume_id);
    }
    VolumeAccess::OpenOptions so = open_options(*src_rec, secrets);  // a clone is encrypted with its source's key
    so.mailbox_timeout_ms = options_.mailbox_timeout_ms;
    auto opened = VolumeAccess::Open(so);
    if (!opened.ok()) return opened.status().With("open source volume " + src_volume_id);
    src = std::move(*opened);
  }
  VolumeAccess::OpenOptions o = open_options(rec, secrets);
  o.create_bytes = rec.capacity_bytes;
  o.allow_daemon = false;
  CSI_ASSIGN_OR_RETURN(auto target, VolumeAccess::Open(o));
  if (target->size_bytes() != rec.capacity_bytes) {
    return Status::Corruption("storage " + rec.storage_url + " already holds a volume of " +
                              std::to_string(target->size_bytes()) + " bytes");
  }
  if (src) {
    if (temporary) {
      auto taken = src->create_snapshot(engine_name);
      if (!taken.ok()) return taken.status();
    }
    // The source detached: read in process. Staged here: from its daemon's
    // snapshot export. Staged on another node: that node copies (mailbox).
    Status copied;
    if (!src->via_daemon()) {
      copied = target->copy_from_snapshot(*src, engine_name);
    } else if (!src->via_mailbox()) {
      copied = target->copy_from_nbd(nbd_socket_path(options_.state_dir, src_volume_id),
                                     src_volume_id + "@" + engine_name, options_.tls);
    } else {
      PBD_RETURN_IF_ERROR(target->close());  // the node opens it, under its own claim
      copied = src->copy_snapshot_remotely(engine_name, rec.storage_url, rec.id, 10 * options_.mailbox_timeout_ms);
    }
    if (temporary) {
      Status dropped = src->delete_snapshot(engine_name);
      if (copied.ok() && !dropped.ok()) copied = dropped;
    }
    PBD_RETURN_IF_ERROR(copied);
    PBD_RETURN_IF_ERROR(src->close());
  }
  return target->close();
}

grpc::Status ControllerService::CreateVolume(grpc::ServerContext*, const CreateVolumeRequest* req,
                                             CreateVolumeResponse* out) {
  if (req->name().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "CreateVolume needs a name");
  if (auto st = check_capabilities(req->volume_capabilities()); !st.ok()) return st;
  std::string base = options_.storage_url;
  for (const auto& [key, value] : req->parameters()) {
    if (key == kStorageUrlParam) {
      base = value;
    } else if (key.rfind("csi.storage.k8s.io/", 0) != 0) {
      return grpc_error(StatusCode::INVALID_ARGUMENT,
                        "unknown StorageClass parameter '" + key + "' (known: " + kStorageUrlParam + ")");
    }
  }
  if (Status st = check_storage_url(base); !st.ok()) return to_grpc(st);
  const auto secrets = call_secrets(req->secrets());
  if (!secrets.ok()) return to_grpc(secrets.status());

  // The smallest size the source allows.
  uint64_t minimum = 0;
  std::string source_volume;  // held too: a copy reads it
  const VolumeContentSource& source = req->volume_content_source();
  // Read-only access modes only, from a snapshot: a snapshot reader volume,
  // no copy (MULTI_NODE_READER_ONLY needs one: nodes serve it at once).
  bool multi_reader = false, all_read_only = true;
  for (const auto& c : req->volume_capabilities()) {
    multi_reader |= c.access_mode().mode() == VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY;
    all_read_only &= is_read_only_mode(c);
  }
  if (multi_reader && !source.has_snapshot()) {
    return grpc_error(StatusCode::INVALID_ARGUMENT,
                      std::string(kMultiReaderNeedsSnapshot) +
                          ": MULTI_NODE_READER_ONLY needs a snapshot as "
                          "volume_content_source (portalbd serves a snapshot to many nodes read-only, never a "
                          "volume a writer changes)");
  }
  if (multi_reader && !all_read_only) {
    return grpc_error(StatusCode::INVALID_ARGUMENT,
                      "MULTI_NODE_READER_ONLY asks for a read-only view of a snapshot, which no writer access "
                      "mode of the same request can write");
  }
  const bool reader = source.has_snapshot() && all_read_only;
  // Source ids this driver could not have made are looked up nowhere: as
  // registry keys they could name another record (or an invalid key).
  if (source.has_snapshot()) {
    const std::string& id = source.snapshot().snapshot_id();
    std::string volume_id, engine_name;
    if (id.empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_content_source has an empty snapshot_id");
    if (!split_snapshot_id(id, &volume_id, &engine_name)) return grpc_error(StatusCode::NOT_FOUND, "no snapshot " + id);
  } else if (source.has_volume()) {
    const std::string& id = source.volume().volume_id();
    if (id.empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_content_source has an empty volume_id");
    if (!plausible_volume_id(id)) return grpc_error(StatusCode::NOT_FOUND, "no volume " + id);
  }
  if (source.has_snapshot()) {
    auto snap = registry_.snapshot(source.snapshot().snapshot_id());
    if (!snap.ok()) return to_grpc(snap.status());
    if (!*snap || (*snap)->deleted) {  // deleted: hidden, kept only for the reader volumes serving it
      return grpc_error(StatusCode::NOT_FOUND, "no snapshot " + source.snapshot().snapshot_id());
    }
    minimum = (*snap)->size_bytes;
    source_volume = (*snap)->volume_id;
  } else if (source.has_volume()) {
    auto vol = registry_.volume(source.volume().volume_id());
    if (!vol.ok()) return to_grpc(vol.status());
    if (!*vol || (*vol)->deleted) return grpc_error(StatusCode::NOT_FOUND, "no volume " + source.volume().volume_id());
    minimum = (*vol)->capacity_bytes;
    source_volume = (*vol)->id;
    std::string engine_name;  // a snapshot reader's data is its source volume's snapshot
    if ((*vol)->snapshot_reader) split_snapshot_id((*vol)->source_snapshot_id, &source_volume, &engine_name);
  }
  const CapacityRange* range = req->has_capacity_range() ? &req->capacity_range() : nullptr;
  if (range != nullptr && minimum != 0 && range->limit_bytes() != 0 &&
      static_cast<uint64_t>(range->limit_bytes()) < minimum) {
    return grpc_error(StatusCode::OUT_OF_RANGE, "the source holds " + std::to_string(minimum) +
                                                    " bytes, more than limit_bytes " +
                                                    std::to_string(range->limit_bytes()));
  }
  auto size = size_for(range, minimum);
  if (!size.ok()) return to_grpc(size.status());
  if (reader) {  // exactly the snapshot's size: nothing is written, so nothing can grow
    if (range != nullptr && static_cast<uint64_t>(range->required_bytes()) > minimum) {
      return grpc_error(StatusCode::OUT_OF_RANGE, "a read-only volume from snapshot " +
                                                      source.snapshot().snapshot_id() + " has its size, " +
                                                      std::to_string(minimum) + " bytes, less than required_bytes " +
                                                      std::to_string(range->required_bytes()) +
                                                      " (a larger volume from it needs a writer access mode: a copy)");
    }
    *size = minimum;
  }
  std::string busy;
  auto hold = locks_.try_hold({"name:" + req->name(), "vol:" + source_volume}, &busy);
  if (!hold) return pending(busy);

  auto existing_id = registry_.volume_id_by_name(req->name());
  if (!existing_id.ok()) return to_grpc(existing_id.status());
  VolumeRecord rec;
  if (*existing_id) {
    auto existing = registry_.volume(**existing_id);
    if (!existing.ok()) return to_grpc(existing.status());
    if (*existing) {  // made before: the same request again, or a conflict
      const VolumeRecord& e = **existing;
      const bool same_source = e.source_snapshot_id == (source.has_snapshot() ? source.snapshot().snapshot_id() : "") &&
                               e.source_volume_id == (source.has_volume() ? source.volume().volume_id() : "");
      const bool same_place = e.snapshot_reader || e.storage_url == join_url(base, e.id);
      if (!fits(e.capacity_bytes, range) || !same_source || e.snapshot_reader != reader || !same_place) {
        return grpc_error(StatusCode::ALREADY_EXISTS, "volume '" + req->name() + "' exists as " + e.id + " with " +
                                                          std::to_string(e.capacity_bytes) + " bytes in " +
                                                          e.storage_url + ", which this request does not match");
      }
      fill_volume(e, out->mutable_volume());
      return grpc::Status::OK;
    }
    rec.id = **existing_id;  // an earlier create of this name stopped half way: finish it
  } else {
    rec.id = new_volume_id(req->name());
    // The name first, so a retry after a crash finishes this id, never leaks one.
    if (Status st = registry_.put_volume_name(req->name(), rec.id); !st.ok()) return to_grpc(st);
  }
  rec.name = req->name();
  rec.storage_url = join_url(base, rec.id);
  rec.capacity_bytes = *size;
  rec.created_unix_ms = now_unix_ms();
  if (source.has_snapshot()) rec.source_snapshot_id = source.snapshot().snapshot_id();
  if (source.has_volume()) rec.source_volume_id = source.volume().volume_id();

  auto logger = log::get("csi");
  if (reader) {  // no storage of its own: the source volume's, which serves the snapshot
    auto src = registry_.volume(source_volume);
    if (!src.ok()) return to_grpc(src.status());
    if (!*src)
      return grpc_error(StatusCode::NOT_FOUND,
                        "no volume " + source_volume + " holds snapshot " + rec.source_snapshot_id);
    rec.storage_url = (*src)->storage_url;
    rec.snapshot_reader = true;
    if (Status st = registry_.put_volume(rec); !st.ok()) return to_grpc(st);
    logger->info("created snapshot reader volume name={} id={} snapshot={} bytes={}", log::quote(rec.name), rec.id,
                 rec.source_snapshot_id, rec.capacity_bytes);
    fill_volume(rec, out->mutable_volume());
    return grpc::Status::OK;
  }
  if (Status st = build_volume(rec, source, *secrets); !st.ok()) {
    logger->error("CreateVolume name={} id={} failed: {}", log::quote(rec.name), rec.id, st.ToString());
    return to_grpc(st.With("create volume " + rec.id + " in " + rec.storage_url));
  }
  if (Status st = registry_.put_volume(rec); !st.ok()) return to_grpc(st);
  logger->info("created volume name={} id={} bytes={} storage={}", log::quote(rec.name), rec.id, rec.capacity_bytes,
               log::quote(rec.storage_url));
  fill_volume(rec, out->mutable_volume());
  return grpc::Status::OK;
}

VolumeAccess::OpenOptions ControllerService::open_options(const VolumeRecord& rec, const CallSecrets& secrets) const {
  VolumeAccess::OpenOptions o;
  o.url = rec.storage_url;
  o.volume_id = rec.id;
  o.state_dir = options_.state_dir;
  o.settings = secrets.settings;
  o.encryption = secrets.encryption;
  return o;
}

Status ControllerService::destroy_volume(const VolumeRecord& rec, const CallSecrets& secrets) {
  auto va = VolumeAccess::Open(open_options(rec, secrets));
  if (va.ok()) {
    if ((*va)->via_daemon()) {
      return Status::Busy("volume " + rec.id + " is staged on this node (its daemon answers on " +
                          control_socket_path(options_.state_dir, rec.id) + ")");
    }
    PBD_RETURN_IF_ERROR((*va)->destroy());
  } else if (!va.status().is(Status::Code::kNotFound)) {
    return va.status();
  }
  std::error_code ec;
  std::filesystem::remove_all(options_.state_dir + "/controller/" + rec.id, ec);
  return registry_.remove_volume(rec.id);
}

Status ControllerService::delete_reader_volume(const VolumeRecord& rec, const CallSecrets& secrets) {
  if (daemon_answers(control_socket_path(options_.state_dir, rec.id))) {
    return Status::Busy("volume " + rec.id + " is staged on this node (its reader daemon answers on " +
                        control_socket_path(options_.state_dir, rec.id) + ")");
  }
  CSI_ASSIGN_OR_RETURN(auto snap, registry_.snapshot(rec.source_snapshot_id));
  if (snap && snap->deleted) {  // the user deleted it while readers served it: the last one takes it along
    CSI_ASSIGN_OR_RETURN(auto others, readers_of(snap->id, rec.id));
    if (others.empty()) PBD_RETURN_IF_ERROR(drop_snapshot(*snap, secrets));
  }
  return registry_.remove_volume(rec.id);
}

Result<std::vector<std::string>> ControllerService::readers_of(const std::string& snapshot_id,
                                                               const std::string& except) {
  CSI_ASSIGN_OR_RETURN(auto all, registry_.volumes());
  std::vector<std::string> out;
  for (const auto& v : all) {
    if (v.snapshot_reader && v.source_snapshot_id == snapshot_id && v.id != except) out.push_back(v.id);
  }
  return out;
}

grpc::Status ControllerService::DeleteVolume(grpc::ServerContext*, const DeleteVolumeRequest* req,
                                             DeleteVolumeResponse*) {
  const auto secrets = call_secrets(req->secrets());
  if (!secrets.ok()) return to_grpc(secrets.status());
  if (req->volume_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "DeleteVolume needs a volume_id");
  if (!plausible_volume_id(req->volume_id())) return grpc::Status::OK;  // never ours: nothing to delete
  auto rec = registry_.volume(req->volume_id());
  if (!rec.ok()) return to_grpc(rec.status());
  if (!*rec || (*rec)->deleted) return grpc::Status::OK;
  VolumeRecord v = **rec;
  std::string busy;
  std::vector<std::string> keys = {"vol:" + v.id, "name:" + v.name};
  std::string snap_volume, engine_name;  // a reader may delete its snapshot: that volume's key too
  if (v.snapshot_reader && split_snapshot_id(v.source_snapshot_id, &snap_volume, &engine_name)) {
    keys.push_back("vol:" + snap_volume);
  }
  auto hold = locks_.try_hold(keys, &busy);
  if (!hold) return pending(busy);
  rec = registry_.volume(v.id);  // again, now that nothing else changes it
  if (!rec.ok()) return to_grpc(rec.status());
  if (!*rec || (*rec)->deleted) return grpc::Status::OK;
  v = **rec;

  auto snaps = registry_.snapshots();
  if (!snaps.ok()) return to_grpc(snaps.status());
  bool has_snapshots = false;
  for (const auto& s : *snaps) has_snapshots |= s.volume_id == v.id;

  if (v.snapshot_reader) {
    if (Status st = delete_reader_volume(v, *secrets); !st.ok()) return to_grpc(st.With("delete volume " + v.id));
  } else if (has_snapshots) {
    // Snapshots outlive their volume (CSI): keep the storage, hidden, until
    // the last one is deleted. Refused while it is staged all the same.
    auto va = VolumeAccess::Open(open_options(v, *secrets));
    if (!va.ok() && !va.status().is(Status::Code::kNotFound)) return to_grpc(va.status());
    if (va.ok() && (*va)->via_daemon()) {
      return grpc_error(StatusCode::FAILED_PRECONDITION, "volume " + v.id + " is staged on this node");
    }
    v.deleted = true;
    if (Status st = registry_.put_volume(v); !st.ok()) return to_grpc(st);
  } else {
    if (Status st = destroy_volume(v, *secrets); !st.ok()) return to_grpc(st.With("delete volume " + v.id));
  }
  auto named = registry_.volume_id_by_name(v.name);
  if (named.ok() && *named && **named == v.id) {
    if (Status st = registry_.remove_volume_name(v.name); !st.ok()) return to_grpc(st);
  }
  log::get("csi")->info("deleted volume id={}{}", v.id, has_snapshots ? " (storage kept for its snapshots)" : "");
  return grpc::Status::OK;
}

grpc::Status ControllerService::ValidateVolumeCapabilities(grpc::ServerContext*,
                                                           const ValidateVolumeCapabilitiesRequest* req,
                                                           ValidateVolumeCapabilitiesResponse* out) {
  if (req->volume_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_id is empty");
  if (req->volume_capabilities().empty()) {
    return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_capabilities is empty");
  }
  if (!plausible_volume_id(req->volume_id())) return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->volume_id());
  auto rec = registry_.volume(req->volume_id());
  if (!rec.ok()) return to_grpc(rec.status());
  if (!*rec || (*rec)->deleted) return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->volume_id());
  for (const auto& c : req->volume_capabilities()) {
    std::string why = unsupported_reason_for(c, (*rec)->snapshot_reader, (*rec)->id);
    if (!why.empty()) {
      out->set_message(why);
      return grpc::Status::OK;  // not confirmed, with the reason
    }
  }
  for (const auto& [key, value] : req->parameters()) {
    if (key != kStorageUrlParam && key.rfind("csi.storage.k8s.io/", 0) != 0) {
      out->set_message("unknown parameter '" + key + "'");
      return grpc::Status::OK;
    }
  }
  auto* confirmed = out->mutable_confirmed();
  *confirmed->mutable_volume_capabilities() = req->volume_capabilities();
  *confirmed->mutable_volume_context() = req->volume_context();
  *confirmed->mutable_parameters() = req->parameters();
  return grpc::Status::OK;
}

grpc::Status ControllerService::ListVolumes(grpc::ServerContext*, const ListVolumesRequest* req,
                                            ListVolumesResponse* out) {
  if (req->max_entries() < 0) return grpc_error(StatusCode::INVALID_ARGUMENT, "max_entries is negative");
  auto all = registry_.volumes();
  if (!all.ok()) return to_grpc(all.status());
  std::vector<VolumeRecord> live;
  for (auto& v : *all) {
    if (!v.deleted) live.push_back(std::move(v));
  }
  auto start = parse_token(req->starting_token(), live.size());
  if (!start.ok()) return token_error(start.status());
  size_t end = live.size();
  if (req->max_entries() > 0) end = std::min(end, *start + static_cast<size_t>(req->max_entries()));
  for (size_t i = *start; i < end; ++i) fill_volume(live[i], out->add_entries()->mutable_volume());
  if (end < live.size()) out->set_next_token(std::to_string(end));
  return grpc::Status::OK;
}

grpc::Status ControllerService::GetCapacity(grpc::ServerContext*, const GetCapacityRequest* req,
                                            GetCapacityResponse* out) {
  for (const auto& c : req->volume_capabilities()) {
    if (!unsupported_reason(c).empty()) {
      out->set_available_capacity(0);  // no volume with that capability fits anywhere
      return grpc::Status::OK;
    }
  }
  // Object storage has no capacity to count down; the limit is the size of
  // one volume.
  out->set_available_capacity(static_cast<int64_t>(kMaxCapacityBytes));
  out->mutable_maximum_volume_size()->set_value(static_cast<int64_t>(kMaxCapacityBytes));
  out->mutable_minimum_volume_size()->set_value(static_cast<int64_t>(kCsiBlockBytes));
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerGetCapabilities(grpc::ServerContext*, const ControllerGetCapabilitiesRequest*,
                                                          ControllerGetCapabilitiesResponse* out) {
  for (auto t :
       {ControllerServiceCapability::RPC::CREATE_DELETE_VOLUME, ControllerServiceCapability::RPC::LIST_VOLUMES,
        ControllerServiceCapability::RPC::GET_CAPACITY, ControllerServiceCapability::RPC::CREATE_DELETE_SNAPSHOT,
        ControllerServiceCapability::RPC::LIST_SNAPSHOTS, ControllerServiceCapability::RPC::CLONE_VOLUME,
        ControllerServiceCapability::RPC::EXPAND_VOLUME, ControllerServiceCapability::RPC::GET_VOLUME}) {
    out->add_capabilities()->mutable_rpc()->set_type(t);
  }
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerExpandVolume(grpc::ServerContext*, const ControllerExpandVolumeRequest* req,
                                                       ControllerExpandVolumeResponse* out) {
  const auto secrets = call_secrets(req->secrets());
  if (!secrets.ok()) return to_grpc(secrets.status());
  if (req->volume_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_id is empty");
  if (!req->has_capacity_range()) return grpc_error(StatusCode::INVALID_ARGUMENT, "capacity_range is missing");
  std::string busy;
  auto hold = locks_.try_hold({"vol:" + req->volume_id()}, &busy);
  if (!hold) return pending(busy);
  if (!plausible_volume_id(req->volume_id())) return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->volume_id());
  auto rec = registry_.volume(req->volume_id());
  if (!rec.ok()) return to_grpc(rec.status());
  if (!*rec || (*rec)->deleted) return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->volume_id());
  VolumeRecord v = **rec;
  auto size = size_for(&req->capacity_range(), 0);
  if (!size.ok()) return to_grpc(size.status());
  const bool block = req->has_volume_capability() && req->volume_capability().has_block();
  if (v.snapshot_reader) {
    if (*size > v.capacity_bytes) {
      return grpc_error(StatusCode::FAILED_PRECONDITION,
                        "volume " + v.id + " is a read-only view of snapshot " + v.source_snapshot_id + " (" +
                            std::to_string(v.capacity_bytes) +
                            " bytes) and cannot grow; a larger volume from it needs a writer access mode (a copy)");
    }
    out->set_capacity_bytes(static_cast<int64_t>(v.capacity_bytes));
    out->set_node_expansion_required(false);
    return grpc::Status::OK;
  }
  if (*size > v.capacity_bytes) {
    VolumeAccess::OpenOptions o = open_options(v, *secrets);
    o.grow_to_bytes = *size;
    o.allow_daemon = false;
    auto va = VolumeAccess::Open(o);
    if (!va.ok()) {
      if (va.status().is(Status::Code::kBusy)) {
        return grpc_error(StatusCode::FAILED_PRECONDITION,
                          "volume " + v.id + " is staged (" + va.status().message() +
                              "); portalbd-csi expands volumes offline: unstage it first");
      }
      return to_grpc(va.status().With("expand volume " + v.id));
    }
    if (Status st = (*va)->close(); !st.ok()) return to_grpc(st);
    v.capacity_bytes = *size;
    if (Status st = registry_.put_volume(v); !st.ok()) return to_grpc(st);
    log::get("csi")->info("expanded volume id={} bytes={}", v.id, v.capacity_bytes);
  }
  out->set_capacity_bytes(static_cast<int64_t>(v.capacity_bytes));
  out->set_node_expansion_required(!block);
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerGetVolume(grpc::ServerContext*, const ControllerGetVolumeRequest* req,
                                                    ControllerGetVolumeResponse* out) {
  if (req->volume_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_id is empty");
  if (!plausible_volume_id(req->volume_id())) return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->volume_id());
  auto rec = registry_.volume(req->volume_id());
  if (!rec.ok()) return to_grpc(rec.status());
  if (!*rec || (*rec)->deleted) return grpc_error(StatusCode::NOT_FOUND, "no volume " + req->volume_id());
  fill_volume(**rec, out->mutable_volume());
  out->mutable_status();
  return grpc::Status::OK;
}

}  // namespace portalbd::csi
