// Tests for the CSI Controller service (controller_service.h), its RPC
// methods called directly (no gRPC server) on volumes in a file:// store and
// a state dir, both in a temporary directory. Volumes are opened in process:
// no daemon answers in that state dir.
#include "csi/controller_service.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <set>

#include "src/log/log.h"
#include "tests/unit/temp_dir.h"

namespace portalbd::csi {
namespace {

using namespace ::csi::v1;
using Mode = VolumeCapability::AccessMode;
using G = grpc::StatusCode;

constexpr uint64_t kGiB = 1ull << 30;

// A controller on <tmp>/store with its state in <tmp>/state.
struct Controller {
  testing::TempDir dir;
  std::unique_ptr<ControllerService> service;

  Controller() {
    (void)log::init("warn");
    ControllerOptions o;
    o.storage_url = "file://" + dir.path + "/store";
    o.state_dir = dir.path + "/state";
    o.mailbox_timeout_ms = 0;
    auto made = ControllerService::Create(o);
    REQUIRE(made.ok());
    service = std::move(*made);
  }

  // The volume's storage holds its manifest.
  bool storage_exists(const std::string& id) const {
    return std::filesystem::exists(dir.path + "/store/" + id + "/volume.json");
  }

  grpc::Status create(const CreateVolumeRequest& req, CreateVolumeResponse* out) {
    return service->CreateVolume(nullptr, &req, out);
  }
  // Creates `name` with `required` bytes (0: none asked); its id.
  std::string create_ok(const std::string& name, int64_t required = 0) {
    CreateVolumeRequest req = create_request(name, required);
    CreateVolumeResponse out;
    grpc::Status st = create(req, &out);
    REQUIRE_MESSAGE(st.ok(), st.error_message());
    return out.volume().volume_id();
  }
  grpc::Status remove(const std::string& id) {
    DeleteVolumeRequest req;
    req.set_volume_id(id);
    DeleteVolumeResponse out;
    return service->DeleteVolume(nullptr, &req, &out);
  }
  grpc::Status snapshot(const std::string& name, const std::string& volume_id, CreateSnapshotResponse* out) {
    CreateSnapshotRequest req;
    req.set_name(name);
    req.set_source_volume_id(volume_id);
    return service->CreateSnapshot(nullptr, &req, out);
  }
  grpc::Status remove_snapshot(const std::string& id) {
    DeleteSnapshotRequest req;
    req.set_snapshot_id(id);
    DeleteSnapshotResponse out;
    return service->DeleteSnapshot(nullptr, &req, &out);
  }
  grpc::Status list(int32_t max_entries, const std::string& token, ListVolumesResponse* out) {
    ListVolumesRequest req;
    req.set_max_entries(max_entries);
    req.set_starting_token(token);
    return service->ListVolumes(nullptr, &req, out);
  }

  static CreateVolumeRequest create_request(const std::string& name, int64_t required = 0, int64_t limit = 0) {
    CreateVolumeRequest req;
    req.set_name(name);
    auto* cap = req.add_volume_capabilities();
    cap->mutable_mount()->set_fs_type("ext4");
    cap->mutable_access_mode()->set_mode(Mode::SINGLE_NODE_WRITER);
    if (required != 0 || limit != 0) {
      req.mutable_capacity_range()->set_required_bytes(required);
      req.mutable_capacity_range()->set_limit_bytes(limit);
    }
    return req;
  }
};

// The capacity CreateVolume gives for a range, or its error code.
struct Sized {
  G code;
  int64_t bytes;
};
Sized created_size(Controller& c, const std::string& name, int64_t required, int64_t limit) {
  CreateVolumeResponse out;
  grpc::Status st = c.create(Controller::create_request(name, required, limit), &out);
  return {st.error_code(), st.ok() ? out.volume().capacity_bytes() : -1};
}

TEST_CASE("csi CreateVolume: requests without a name, with no or unsupported capabilities, are INVALID_ARGUMENT") {
  Controller c;
  CreateVolumeResponse out;
  CHECK(c.create(Controller::create_request(""), &out).error_code() == G::INVALID_ARGUMENT);
  CreateVolumeRequest no_caps = Controller::create_request("a");
  no_caps.clear_volume_capabilities();
  CHECK(c.create(no_caps, &out).error_code() == G::INVALID_ARGUMENT);
  CreateVolumeRequest multi = Controller::create_request("a");
  multi.mutable_volume_capabilities(0)->mutable_access_mode()->set_mode(Mode::MULTI_NODE_MULTI_WRITER);
  CHECK(c.create(multi, &out).error_code() == G::INVALID_ARGUMENT);
  CreateVolumeRequest unknown_param = Controller::create_request("a");
  (*unknown_param.mutable_parameters())["fsType"] = "ext4";
  grpc::Status st = c.create(unknown_param, &out);
  CHECK(st.error_code() == G::INVALID_ARGUMENT);
  CHECK(st.error_message().find("fsType") != std::string::npos);
  CreateVolumeRequest memory = Controller::create_request("a");
  (*memory.mutable_parameters())["storageUrl"] = "memory://";
  CHECK(c.create(memory, &out).error_code() == G::INVALID_ARGUMENT);
  CreateVolumeRequest bad_key = Controller::create_request("a");
  (*bad_key.mutable_secrets())["encryptionKey"] = "short";
  CHECK(c.create(bad_key, &out).error_code() == G::INVALID_ARGUMENT);
  // None of them made anything.
  ListVolumesResponse listed;
  REQUIRE(c.list(0, "", &listed).ok());
  CHECK(listed.entries_size() == 0);
}

TEST_CASE("csi CreateVolume: capacity is rounded up to whole blocks, never down, within the limit") {
  Controller c;
  CHECK(created_size(c, "default", 0, 0).bytes == static_cast<int64_t>(kGiB));
  CHECK(created_size(c, "exact", 8192, 0).bytes == 8192);
  CHECK(created_size(c, "up", 5000, 0).bytes == 8192);
  CHECK(created_size(c, "one", 1, 0).bytes == 4096);
  CHECK(created_size(c, "up-under-limit", 5000, 8192).bytes == 8192);
  // Only a limit: the default size is cut to it, in whole blocks.
  CHECK(created_size(c, "limit-only", 0, 3 * 4096).bytes == 3 * 4096);
  CHECK(created_size(c, "limit-only-odd", 0, 5000).bytes == 4096);
  // No block multiple in [required, limit].
  CHECK(created_size(c, "no-fit", 5000, 6000).code == G::OUT_OF_RANGE);
  CHECK(created_size(c, "under-a-block", 0, 4095).code == G::OUT_OF_RANGE);
  CHECK(created_size(c, "too-big", static_cast<int64_t>(kMaxCapacityBytes) + 1, 0).code == G::OUT_OF_RANGE);
  CHECK(created_size(c, "limit-below", 8192, 4096).code == G::INVALID_ARGUMENT);
  CHECK(created_size(c, "negative", -1, 0).code == G::INVALID_ARGUMENT);
}

TEST_CASE("csi CreateVolume: the same request again returns the same volume; a different one is ALREADY_EXISTS") {
  Controller c;
  CreateVolumeRequest req = Controller::create_request("pvc-1", 10000);
  CreateVolumeResponse first, again;
  REQUIRE(c.create(req, &first).ok());
  const ::csi::v1::Volume& v = first.volume();
  CHECK(v.volume_id().rfind("pvc-1-", 0) == 0);
  CHECK(v.capacity_bytes() == 12288);
  CHECK(v.volume_context().at("storageUrl") == "file://" + c.dir.path + "/store/" + v.volume_id());
  CHECK(c.storage_exists(v.volume_id()));
  REQUIRE(c.create(req, &again).ok());
  CHECK(again.volume().volume_id() == v.volume_id());
  CHECK(again.volume().capacity_bytes() == 12288);

  SUBCASE("a range the volume still fits is the same request") {
    CreateVolumeResponse out;
    REQUIRE(c.create(Controller::create_request("pvc-1", 12288, 12288), &out).ok());
    CHECK(out.volume().volume_id() == v.volume_id());
    REQUIRE(c.create(Controller::create_request("pvc-1"), &out).ok());
    CHECK(out.volume().volume_id() == v.volume_id());
  }
  SUBCASE("a bigger size, a smaller limit or other storage is not") {
    CreateVolumeResponse out;
    CHECK(c.create(Controller::create_request("pvc-1", 20000), &out).error_code() == G::ALREADY_EXISTS);
    CHECK(c.create(Controller::create_request("pvc-1", 4096, 8192), &out).error_code() == G::ALREADY_EXISTS);
    CreateVolumeRequest elsewhere = Controller::create_request("pvc-1", 10000);
    (*elsewhere.mutable_parameters())["storageUrl"] = "file://" + c.dir.path + "/other";
    CHECK(c.create(elsewhere, &out).error_code() == G::ALREADY_EXISTS);
  }
  ListVolumesResponse listed;
  REQUIRE(c.list(0, "", &listed).ok());
  CHECK(listed.entries_size() == 1);
}

TEST_CASE("csi CreateVolume: the storageUrl parameter puts a volume elsewhere; k8s parameters are ignored") {
  Controller c;
  CreateVolumeRequest req = Controller::create_request("elsewhere", 4096);
  (*req.mutable_parameters())["storageUrl"] = "file://" + c.dir.path + "/other/";
  (*req.mutable_parameters())["csi.storage.k8s.io/pvc/name"] = "data";
  CreateVolumeResponse out;
  grpc::Status st = c.create(req, &out);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  const std::string id = out.volume().volume_id();
  CHECK(out.volume().volume_context().at("storageUrl") == "file://" + c.dir.path + "/other/" + id);
  CHECK(std::filesystem::exists(c.dir.path + "/other/" + id + "/volume.json"));
  CHECK_FALSE(c.storage_exists(id));
}

TEST_CASE("csi DeleteVolume: removes storage and name; again, unknown or foreign ids are OK") {
  Controller c;
  const std::string id = c.create_ok("pvc-del", 4096);
  REQUIRE(c.storage_exists(id));
  REQUIRE(c.remove(id).ok());
  CHECK_FALSE(c.storage_exists(id));
  CHECK(c.remove(id).ok());
  CHECK(c.remove("never-made-00000000").ok());
  CHECK(c.remove("../../etc").ok());
  CHECK(c.remove("").error_code() == G::INVALID_ARGUMENT);
  // The name is free again, for a new volume.
  const std::string again = c.create_ok("pvc-del", 4096);
  CHECK(again != id);
  ListVolumesResponse listed;
  REQUIRE(c.list(0, "", &listed).ok());
  REQUIRE(listed.entries_size() == 1);
  CHECK(listed.entries(0).volume().volume_id() == again);
}

TEST_CASE("csi ListVolumes: pages by max_entries and next_token; a token not issued is ABORTED") {
  Controller c;
  std::set<std::string> made;
  for (const char* name : {"a", "b", "c"}) made.insert(c.create_ok(name, 4096));

  ListVolumesResponse page1, page2, all;
  REQUIRE(c.list(2, "", &page1).ok());
  CHECK(page1.entries_size() == 2);
  CHECK(page1.next_token() == "2");
  REQUIRE(c.list(2, page1.next_token(), &page2).ok());
  CHECK(page2.entries_size() == 1);
  CHECK(page2.next_token() == "");
  std::set<std::string> seen;
  for (const auto* page : {&page1, &page2}) {
    for (const auto& e : page->entries()) seen.insert(e.volume().volume_id());
  }
  CHECK(seen == made);
  REQUIRE(c.list(0, "", &all).ok());
  CHECK(all.entries_size() == 3);
  CHECK(all.next_token() == "");
  ListVolumesResponse at_end;
  REQUIRE(c.list(0, "3", &at_end).ok());
  CHECK(at_end.entries_size() == 0);

  for (const char* token : {"x", "4", "-1", "1x", " 1", "+1", "0x1", "99999999999999999999999"}) {
    CAPTURE(std::string(token));
    ListVolumesResponse out;
    CHECK(c.list(0, token, &out).error_code() == G::ABORTED);
  }
  ListVolumesResponse out;
  CHECK(c.list(-1, "", &out).error_code() == G::INVALID_ARGUMENT);
}

TEST_CASE("csi snapshots: create is idempotent by name, list pages, delete is idempotent") {
  Controller c;
  const std::string vol = c.create_ok("src", 8192);
  const std::string other = c.create_ok("other", 4096);
  CreateSnapshotResponse s1, s1_again, s2;
  REQUIRE(c.snapshot("snap-1", vol, &s1).ok());
  CHECK(s1.snapshot().source_volume_id() == vol);
  CHECK(s1.snapshot().size_bytes() == 8192);
  CHECK(s1.snapshot().ready_to_use());
  CHECK(s1.snapshot().snapshot_id().rfind(vol + "@", 0) == 0);
  REQUIRE(c.snapshot("snap-1", vol, &s1_again).ok());
  CHECK(s1_again.snapshot().snapshot_id() == s1.snapshot().snapshot_id());
  CreateSnapshotResponse out;
  CHECK(c.snapshot("snap-1", other, &out).error_code() == G::ALREADY_EXISTS);
  CHECK(c.snapshot("snap-x", "no-such-volume-00000000", &out).error_code() == G::NOT_FOUND);
  CHECK(c.snapshot("snap-x", "Not/A/Volume", &out).error_code() == G::NOT_FOUND);
  CHECK(c.snapshot("", vol, &out).error_code() == G::INVALID_ARGUMENT);
  CHECK(c.snapshot("snap-x", "", &out).error_code() == G::INVALID_ARGUMENT);
  REQUIRE(c.snapshot("snap-2", other, &s2).ok());

  ListSnapshotsRequest req;
  ListSnapshotsResponse listed;
  REQUIRE(c.service->ListSnapshots(nullptr, &req, &listed).ok());
  CHECK(listed.entries_size() == 2);
  req.set_max_entries(1);
  listed.Clear();
  REQUIRE(c.service->ListSnapshots(nullptr, &req, &listed).ok());
  CHECK(listed.entries_size() == 1);
  CHECK(listed.next_token() == "1");
  req.set_starting_token("1");
  listed.Clear();
  REQUIRE(c.service->ListSnapshots(nullptr, &req, &listed).ok());
  CHECK(listed.entries_size() == 1);
  CHECK(listed.next_token() == "");
  req.set_starting_token("2x");
  CHECK(c.service->ListSnapshots(nullptr, &req, &listed).error_code() == G::ABORTED);

  ListSnapshotsRequest by_volume;
  by_volume.set_source_volume_id(other);
  listed.Clear();
  REQUIRE(c.service->ListSnapshots(nullptr, &by_volume, &listed).ok());
  REQUIRE(listed.entries_size() == 1);
  CHECK(listed.entries(0).snapshot().snapshot_id() == s2.snapshot().snapshot_id());
  ListSnapshotsRequest by_id;
  by_id.set_snapshot_id(s1.snapshot().snapshot_id());
  listed.Clear();
  REQUIRE(c.service->ListSnapshots(nullptr, &by_id, &listed).ok());
  REQUIRE(listed.entries_size() == 1);
  CHECK(listed.entries(0).snapshot().source_volume_id() == vol);
  by_id.set_source_volume_id(other);  // the id, but of another volume: none
  listed.Clear();
  REQUIRE(c.service->ListSnapshots(nullptr, &by_id, &listed).ok());
  CHECK(listed.entries_size() == 0);
  by_id.Clear();
  by_id.set_snapshot_id("not-a-snapshot-id");
  listed.Clear();
  REQUIRE(c.service->ListSnapshots(nullptr, &by_id, &listed).ok());
  CHECK(listed.entries_size() == 0);

  REQUIRE(c.remove_snapshot(s1.snapshot().snapshot_id()).ok());
  CHECK(c.remove_snapshot(s1.snapshot().snapshot_id()).ok());
  CHECK(c.remove_snapshot("garbage").ok());
  CHECK(c.remove_snapshot("").error_code() == G::INVALID_ARGUMENT);
  listed.Clear();
  REQUIRE(c.service->ListSnapshots(nullptr, &by_volume, &listed).ok());
  CHECK(listed.entries_size() == 1);
  // The name is free again: a new snapshot, with a new id.
  CreateSnapshotResponse s1_new;
  REQUIRE(c.snapshot("snap-1", vol, &s1_new).ok());
  CHECK(s1_new.snapshot().snapshot_id() != s1.snapshot().snapshot_id());
}

TEST_CASE("csi DeleteVolume of a volume with snapshots hides it and keeps its storage until the last one goes") {
  Controller c;
  const std::string vol = c.create_ok("keep", 4096);
  CreateSnapshotResponse snap;
  REQUIRE(c.snapshot("keep-snap", vol, &snap).ok());
  REQUIRE(c.remove(vol).ok());
  ListVolumesResponse listed;
  REQUIRE(c.list(0, "", &listed).ok());
  CHECK(listed.entries_size() == 0);
  CHECK(c.storage_exists(vol));
  CHECK(c.remove(vol).ok());  // again: already deleted
  ControllerGetVolumeRequest get;
  get.set_volume_id(vol);
  ControllerGetVolumeResponse got;
  CHECK(c.service->ControllerGetVolume(nullptr, &get, &got).error_code() == G::NOT_FOUND);

  // A restore from the snapshot still works, at the snapshot's size.
  CreateVolumeRequest restore = Controller::create_request("restored");
  restore.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(snap.snapshot().snapshot_id());
  CreateVolumeResponse restored;
  grpc::Status st = c.create(restore, &restored);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  CHECK(restored.volume().capacity_bytes() == 4096);
  CHECK(restored.volume().content_source().snapshot().snapshot_id() == snap.snapshot().snapshot_id());

  REQUIRE(c.remove_snapshot(snap.snapshot().snapshot_id()).ok());
  CHECK_FALSE(c.storage_exists(vol));
  CHECK(c.storage_exists(restored.volume().volume_id()));
}

// A MULTI_NODE_READER_ONLY request for `name` from `snapshot_id` (none: "").
CreateVolumeRequest reader_request(const std::string& name, const std::string& snapshot_id, bool block = false) {
  CreateVolumeRequest req = Controller::create_request(name);
  auto* cap = req.mutable_volume_capabilities(0);
  if (block) cap->mutable_block();
  cap->mutable_access_mode()->set_mode(Mode::MULTI_NODE_READER_ONLY);
  if (!snapshot_id.empty()) req.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(snapshot_id);
  return req;
}

// The entries of <store>: one per volume prefix, plus _csi.
std::set<std::string> store_entries(const Controller& c) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(c.dir.path + "/store")) {
    out.insert(e.path().filename().string());
  }
  return out;
}

TEST_CASE("csi snapshot reader volumes: MULTI_NODE_READER_ONLY from a snapshot is a record, no copy") {
  Controller c;
  const std::string vol = c.create_ok("src", 3 * 4096);
  CreateSnapshotResponse snap;
  REQUIRE(c.snapshot("src-snap", vol, &snap).ok());
  const std::string snap_id = snap.snapshot().snapshot_id();
  const auto before = store_entries(c);
  CreateVolumeResponse out;

  // Without a snapshot source: refused with the reason, nothing made.
  grpc::Status st = c.create(reader_request("rox-empty", ""), &out);
  CHECK(st.error_code() == G::INVALID_ARGUMENT);
  CHECK(st.error_message().find(kMultiReaderNeedsSnapshot) != std::string::npos);
  CreateVolumeRequest from_volume = reader_request("rox-clone", "");
  from_volume.mutable_volume_content_source()->mutable_volume()->set_volume_id(vol);
  CHECK(c.create(from_volume, &out).error_code() == G::INVALID_ARGUMENT);
  // Mixed with a writer mode: refused.
  CreateVolumeRequest mixed = reader_request("rox-mixed", snap_id);
  auto* writer = mixed.add_volume_capabilities();
  writer->mutable_mount();
  writer->mutable_access_mode()->set_mode(Mode::SINGLE_NODE_WRITER);
  CHECK(c.create(mixed, &out).error_code() == G::INVALID_ARGUMENT);
  // Larger than the snapshot: a reader cannot grow.
  CreateVolumeRequest larger = reader_request("rox-larger", snap_id);
  larger.mutable_capacity_range()->set_required_bytes(4 * 4096);
  st = c.create(larger, &out);
  CHECK(st.error_code() == G::OUT_OF_RANGE);
  CHECK(st.error_message().find(std::to_string(3 * 4096)) != std::string::npos);

  st = c.create(reader_request("rox", snap_id), &out);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  const std::string rox = out.volume().volume_id();
  CHECK(out.volume().capacity_bytes() == 3 * 4096);
  CHECK(out.volume().content_source().snapshot().snapshot_id() == snap_id);
  CHECK(out.volume().volume_context().at(kStorageUrlContext) == "file://" + c.dir.path + "/store/" + vol);
  CHECK(out.volume().volume_context().at(kReaderSnapshotContext) == snap_id.substr(snap_id.find('@') + 1));
  CHECK(store_entries(c) == before);  // no storage of its own
  CHECK_FALSE(c.storage_exists(rox));

  // Idempotent by name; the same name as a writable copy is a conflict.
  CreateVolumeResponse again;
  REQUIRE(c.create(reader_request("rox", snap_id), &again).ok());
  CHECK(again.volume().volume_id() == rox);
  CreateVolumeRequest as_copy = Controller::create_request("rox");
  as_copy.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(snap_id);
  CHECK(c.create(as_copy, &again).error_code() == G::ALREADY_EXISTS);

  // SINGLE_NODE_READER_ONLY alone from a snapshot is a reader too; with a
  // writer mode it stays a copy.
  CreateVolumeRequest single = reader_request("ro-single", snap_id, true);
  single.mutable_volume_capabilities(0)->mutable_access_mode()->set_mode(Mode::SINGLE_NODE_READER_ONLY);
  REQUIRE(c.create(single, &out).ok());
  CHECK(out.volume().volume_context().count(kReaderSnapshotContext) == 1);
  CHECK(store_entries(c) == before);

  // Validate / Get: read-only modes confirmed, writer modes not.
  ValidateVolumeCapabilitiesRequest val;
  val.set_volume_id(rox);
  *val.add_volume_capabilities() = reader_request("x", "").volume_capabilities(0);
  ValidateVolumeCapabilitiesResponse vout;
  REQUIRE(c.service->ValidateVolumeCapabilities(nullptr, &val, &vout).ok());
  CHECK(vout.has_confirmed());
  val.mutable_volume_capabilities(0)->mutable_access_mode()->set_mode(Mode::SINGLE_NODE_WRITER);
  vout.Clear();
  REQUIRE(c.service->ValidateVolumeCapabilities(nullptr, &val, &vout).ok());
  CHECK_FALSE(vout.has_confirmed());
  CHECK(vout.message().find("read-only view of a snapshot") != std::string::npos);
  val.set_volume_id(vol);  // and a writable volume does not confirm MULTI_NODE_READER_ONLY
  val.mutable_volume_capabilities(0)->mutable_access_mode()->set_mode(Mode::MULTI_NODE_READER_ONLY);
  vout.Clear();
  REQUIRE(c.service->ValidateVolumeCapabilities(nullptr, &val, &vout).ok());
  CHECK_FALSE(vout.has_confirmed());
  CHECK(vout.message().find(kMultiReaderNeedsSnapshot) != std::string::npos);
  ControllerGetVolumeRequest get;
  get.set_volume_id(rox);
  ControllerGetVolumeResponse got;
  REQUIRE(c.service->ControllerGetVolume(nullptr, &get, &got).ok());
  CHECK(got.volume().volume_context().count(kReaderSnapshotContext) == 1);

  // Expansion past the snapshot's size and snapshots of it are refused.
  ControllerExpandVolumeRequest grow;
  grow.set_volume_id(rox);
  grow.mutable_capacity_range()->set_required_bytes(8 * 4096);
  ControllerExpandVolumeResponse grown;
  st = c.service->ControllerExpandVolume(nullptr, &grow, &grown);
  CHECK(st.error_code() == G::FAILED_PRECONDITION);
  CHECK(st.error_message().find("cannot grow") != std::string::npos);
  CreateSnapshotResponse of_reader;
  st = c.snapshot("of-reader", rox, &of_reader);
  CHECK(st.error_code() == G::INVALID_ARGUMENT);
  CHECK(st.error_message().find(snap_id) != std::string::npos);

  // A clone of a reader is a writable copy of its snapshot.
  CreateVolumeRequest clone = Controller::create_request("reader-clone");
  clone.mutable_volume_content_source()->mutable_volume()->set_volume_id(rox);
  st = c.create(clone, &out);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  CHECK(out.volume().capacity_bytes() == 3 * 4096);
  CHECK(c.storage_exists(out.volume().volume_id()));
}

TEST_CASE("csi snapshot reader volumes: a snapshot they serve is hidden on delete, dropped with the last reader") {
  Controller c;
  const std::string vol = c.create_ok("src", 4096);
  CreateSnapshotResponse snap;
  REQUIRE(c.snapshot("src-snap", vol, &snap).ok());
  const std::string snap_id = snap.snapshot().snapshot_id();
  CreateVolumeResponse a, b;
  REQUIRE(c.create(reader_request("rox-a", snap_id), &a).ok());
  REQUIRE(c.create(reader_request("rox-b", snap_id), &b).ok());
  REQUIRE(c.remove(vol).ok());  // the source volume: hidden, its storage kept for the snapshot
  CHECK(c.storage_exists(vol));

  REQUIRE(c.remove_snapshot(snap_id).ok());
  CHECK(c.remove_snapshot(snap_id).ok());  // idempotent
  ListSnapshotsRequest lreq;
  ListSnapshotsResponse listed;
  REQUIRE(c.service->ListSnapshots(nullptr, &lreq, &listed).ok());
  CHECK(listed.entries_size() == 0);
  lreq.set_snapshot_id(snap_id);
  REQUIRE(c.service->ListSnapshots(nullptr, &lreq, &listed).ok());
  CHECK(listed.entries_size() == 0);
  CreateVolumeResponse out;
  CHECK(c.create(reader_request("rox-c", snap_id), &out).error_code() == G::NOT_FOUND);
  CHECK(c.storage_exists(vol));
  // The engine snapshot is still there: a copy from a reader reads it.
  CreateVolumeRequest clone = Controller::create_request("copy-a");
  clone.mutable_volume_content_source()->mutable_volume()->set_volume_id(a.volume().volume_id());
  grpc::Status st = c.create(clone, &out);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  REQUIRE(c.remove(out.volume().volume_id()).ok());

  REQUIRE(c.remove(a.volume().volume_id()).ok());
  CHECK(c.storage_exists(vol));  // rox-b still reads it
  REQUIRE(c.remove(b.volume().volume_id()).ok());
  CHECK_FALSE(c.storage_exists(vol));  // the last reader took the snapshot, and with it the volume's storage
  CHECK(c.remove(b.volume().volume_id()).ok());
  ListVolumesResponse volumes;
  REQUIRE(c.list(0, "", &volumes).ok());
  CHECK(volumes.entries_size() == 0);
}

TEST_CASE("csi snapshot reader volumes: deleting a reader of a live snapshot keeps the snapshot") {
  Controller c;
  const std::string vol = c.create_ok("src", 4096);
  CreateSnapshotResponse snap;
  REQUIRE(c.snapshot("src-snap", vol, &snap).ok());
  CreateVolumeResponse a;
  REQUIRE(c.create(reader_request("rox-a", snap.snapshot().snapshot_id()), &a).ok());
  REQUIRE(c.remove(a.volume().volume_id()).ok());
  ListSnapshotsRequest lreq;
  ListSnapshotsResponse listed;
  REQUIRE(c.service->ListSnapshots(nullptr, &lreq, &listed).ok());
  CHECK(listed.entries_size() == 1);
  // With no reader left, DeleteSnapshot deletes for real, as before.
  REQUIRE(c.remove(vol).ok());
  REQUIRE(c.remove_snapshot(snap.snapshot().snapshot_id()).ok());
  CHECK_FALSE(c.storage_exists(vol));
}

TEST_CASE("csi CreateVolume from a source: the source's size is the minimum; a missing source is NOT_FOUND") {
  Controller c;
  const std::string vol = c.create_ok("base", 3 * 4096);
  CreateSnapshotResponse snap;
  REQUIRE(c.snapshot("base-snap", vol, &snap).ok());
  CreateVolumeResponse out;

  CreateVolumeRequest too_small = Controller::create_request("small", 0, 4096);
  too_small.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(snap.snapshot().snapshot_id());
  CHECK(c.create(too_small, &out).error_code() == G::OUT_OF_RANGE);

  CreateVolumeRequest bigger = Controller::create_request("bigger", 5 * 4096);
  bigger.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(snap.snapshot().snapshot_id());
  REQUIRE(c.create(bigger, &out).ok());
  CHECK(out.volume().capacity_bytes() == 5 * 4096);

  CreateVolumeRequest clone = Controller::create_request("clone");
  clone.mutable_volume_content_source()->mutable_volume()->set_volume_id(vol);
  grpc::Status st = c.create(clone, &out);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  CHECK(out.volume().capacity_bytes() == 3 * 4096);
  CHECK(out.volume().content_source().volume().volume_id() == vol);

  for (const char* missing : {"no-such-volume-00000000@csi-0000000000000000", "no-at-sign", "../names/x"}) {
    CAPTURE(std::string(missing));
    CreateVolumeRequest req = Controller::create_request("from-missing");
    req.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(missing);
    CHECK(c.create(req, &out).error_code() == G::NOT_FOUND);
    CreateVolumeRequest vreq = Controller::create_request("from-missing-volume");
    vreq.mutable_volume_content_source()->mutable_volume()->set_volume_id(missing);
    CHECK(c.create(vreq, &out).error_code() == G::NOT_FOUND);
  }
  CreateVolumeRequest empty_snapshot = Controller::create_request("from-empty");
  empty_snapshot.mutable_volume_content_source()->mutable_snapshot();
  CHECK(c.create(empty_snapshot, &out).error_code() == G::INVALID_ARGUMENT);
  CreateVolumeRequest empty_volume = Controller::create_request("from-empty");
  empty_volume.mutable_volume_content_source()->mutable_volume();
  CHECK(c.create(empty_volume, &out).error_code() == G::INVALID_ARGUMENT);
  ListVolumesResponse listed;
  REQUIRE(c.list(0, "", &listed).ok());
  CHECK(listed.entries_size() == 3);  // base, bigger, clone
}

TEST_CASE("csi ValidateVolumeCapabilities: confirms what is served, says why not otherwise") {
  Controller c;
  const std::string vol = c.create_ok("v", 4096);
  ValidateVolumeCapabilitiesRequest req;
  req.set_volume_id(vol);
  auto* cap = req.add_volume_capabilities();
  cap->mutable_block();
  cap->mutable_access_mode()->set_mode(Mode::SINGLE_NODE_READER_ONLY);
  ValidateVolumeCapabilitiesResponse out;
  REQUIRE(c.service->ValidateVolumeCapabilities(nullptr, &req, &out).ok());
  CHECK(out.has_confirmed());
  CHECK(out.confirmed().volume_capabilities_size() == 1);

  cap->mutable_access_mode()->set_mode(Mode::MULTI_NODE_MULTI_WRITER);
  out.Clear();
  REQUIRE(c.service->ValidateVolumeCapabilities(nullptr, &req, &out).ok());
  CHECK_FALSE(out.has_confirmed());
  CHECK(out.message().find("MULTI_NODE_MULTI_WRITER") != std::string::npos);

  cap->mutable_access_mode()->set_mode(Mode::SINGLE_NODE_WRITER);
  (*req.mutable_parameters())["color"] = "blue";
  out.Clear();
  REQUIRE(c.service->ValidateVolumeCapabilities(nullptr, &req, &out).ok());
  CHECK_FALSE(out.has_confirmed());
  CHECK(out.message().find("color") != std::string::npos);

  req.clear_parameters();
  req.set_volume_id("no-such-volume-00000000");
  CHECK(c.service->ValidateVolumeCapabilities(nullptr, &req, &out).error_code() == G::NOT_FOUND);
  req.set_volume_id("../x");
  CHECK(c.service->ValidateVolumeCapabilities(nullptr, &req, &out).error_code() == G::NOT_FOUND);
  req.set_volume_id("");
  CHECK(c.service->ValidateVolumeCapabilities(nullptr, &req, &out).error_code() == G::INVALID_ARGUMENT);
  req.set_volume_id(vol);
  req.clear_volume_capabilities();
  CHECK(c.service->ValidateVolumeCapabilities(nullptr, &req, &out).error_code() == G::INVALID_ARGUMENT);
}

TEST_CASE("csi GetCapacity and ControllerGetCapabilities") {
  Controller c;
  GetCapacityRequest req;
  GetCapacityResponse out;
  REQUIRE(c.service->GetCapacity(nullptr, &req, &out).ok());
  CHECK(out.available_capacity() == static_cast<int64_t>(kMaxCapacityBytes));
  CHECK(out.maximum_volume_size().value() == static_cast<int64_t>(kMaxCapacityBytes));
  CHECK(out.minimum_volume_size().value() == static_cast<int64_t>(kCsiBlockBytes));
  auto* cap = req.add_volume_capabilities();
  cap->mutable_mount()->set_fs_type("zfs");
  cap->mutable_access_mode()->set_mode(Mode::SINGLE_NODE_WRITER);
  out.Clear();
  REQUIRE(c.service->GetCapacity(nullptr, &req, &out).ok());
  CHECK(out.available_capacity() == 0);

  ControllerGetCapabilitiesRequest creq;
  ControllerGetCapabilitiesResponse cout;
  REQUIRE(c.service->ControllerGetCapabilities(nullptr, &creq, &cout).ok());
  std::set<int> rpcs;
  for (const auto& cap_out : cout.capabilities()) rpcs.insert(cap_out.rpc().type());
  using R = ControllerServiceCapability::RPC;
  for (auto want : {R::CREATE_DELETE_VOLUME, R::LIST_VOLUMES, R::GET_CAPACITY, R::CREATE_DELETE_SNAPSHOT,
                    R::LIST_SNAPSHOTS, R::CLONE_VOLUME, R::EXPAND_VOLUME, R::GET_VOLUME}) {
    CHECK(rpcs.count(want) == 1);
  }
}

TEST_CASE("csi ControllerExpandVolume: grows in whole blocks, never shrinks; block volumes need no node step") {
  Controller c;
  const std::string vol = c.create_ok("grow", 8192);
  ControllerExpandVolumeRequest req;
  req.set_volume_id(vol);
  req.mutable_capacity_range()->set_required_bytes(10000);
  ControllerExpandVolumeResponse out;
  grpc::Status st = c.service->ControllerExpandVolume(nullptr, &req, &out);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  CHECK(out.capacity_bytes() == 12288);
  CHECK(out.node_expansion_required());
  ControllerGetVolumeRequest get;
  get.set_volume_id(vol);
  ControllerGetVolumeResponse got;
  REQUIRE(c.service->ControllerGetVolume(nullptr, &get, &got).ok());
  CHECK(got.volume().capacity_bytes() == 12288);

  req.mutable_capacity_range()->set_required_bytes(4096);  // smaller: kept as is
  req.mutable_volume_capability()->mutable_block();
  out.Clear();
  REQUIRE(c.service->ControllerExpandVolume(nullptr, &req, &out).ok());
  CHECK(out.capacity_bytes() == 12288);
  CHECK_FALSE(out.node_expansion_required());

  req.set_volume_id("no-such-volume-00000000");
  CHECK(c.service->ControllerExpandVolume(nullptr, &req, &out).error_code() == G::NOT_FOUND);
  req.set_volume_id(vol);
  req.clear_capacity_range();
  CHECK(c.service->ControllerExpandVolume(nullptr, &req, &out).error_code() == G::INVALID_ARGUMENT);
}

TEST_CASE("csi encrypted volumes: calls without the key are refused naming the secret, never quoting it") {
  Controller c;
  const std::string key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31
  const std::string other = "HxwdHhscGRoXGBUWExQREg8QDQ4LDAkKBwgFBgMEAQI=";
  CreateVolumeRequest req = Controller::create_request("secret", 4096);
  (*req.mutable_secrets())[kEncryptionKeySecret] = key;
  CreateVolumeResponse made;
  grpc::Status st = c.create(req, &made);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  const std::string vol = made.volume().volume_id();

  for (const std::string& given : {std::string(), other}) {
    CAPTURE(given);
    CreateSnapshotRequest snap;
    snap.set_name("secret-snap");
    snap.set_source_volume_id(vol);
    if (!given.empty()) (*snap.mutable_secrets())[kEncryptionKeySecret] = given;
    CreateSnapshotResponse out;
    st = c.service->CreateSnapshot(nullptr, &snap, &out);
    CHECK(st.error_code() == G::INVALID_ARGUMENT);
    CHECK(st.error_message().find(kEncryptionKeySecret) != std::string::npos);
    CHECK(st.error_message().find(key) == std::string::npos);
    CHECK(st.error_message().find(other) == std::string::npos);
  }
  CreateSnapshotRequest snap;
  snap.set_name("secret-snap");
  snap.set_source_volume_id(vol);
  (*snap.mutable_secrets())[kEncryptionKeySecret] = key;
  CreateSnapshotResponse out;
  st = c.service->CreateSnapshot(nullptr, &snap, &out);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  // A restore is encrypted with the same key: it needs it too.
  CreateVolumeRequest restore = Controller::create_request("secret-restore");
  restore.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(out.snapshot().snapshot_id());
  CreateVolumeResponse restored;
  CHECK(c.create(restore, &restored).error_code() == G::INVALID_ARGUMENT);
  (*restore.mutable_secrets())[kEncryptionKeySecret] = key;
  st = c.create(restore, &restored);
  CHECK_MESSAGE(st.ok(), st.error_message());
  // DeleteVolume opens the volume to remove it: without the key (the
  // StorageClass's provisioner secret) it is refused and nothing goes.
  const std::string restored_id = restored.volume().volume_id();
  CHECK(c.remove(restored_id).error_code() == G::INVALID_ARGUMENT);
  CHECK(c.storage_exists(restored_id));
  DeleteVolumeRequest del;
  del.set_volume_id(restored_id);
  (*del.mutable_secrets())[kEncryptionKeySecret] = key;
  DeleteVolumeResponse deleted;
  REQUIRE(c.service->DeleteVolume(nullptr, &del, &deleted).ok());
  CHECK_FALSE(c.storage_exists(restored_id));
}

}  // namespace
}  // namespace portalbd::csi
