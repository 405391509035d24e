// Tests for the CSI registry (registry.h): id shapes, and records kept in a
// file:// store in a temporary directory.
#include "csi/registry.h"

#include <doctest/doctest.h>

#include <set>

#include "tests/unit/temp_dir.h"

namespace portalbd::csi {
namespace {

std::shared_ptr<ObjectStore> file_store(const testing::TempDir& dir) {
  auto store = open_object_store("file://" + dir.path);
  REQUIRE(store.ok());
  return *store;
}

TEST_CASE("csi ids: new_volume_id cleans the name, stays short and is always plausible") {
  CHECK(new_volume_id("pvc-1234").rfind("pvc-1234-", 0) == 0);
  CHECK(new_volume_id("PVC_Upper.Case").rfind("pvc-upper-case-", 0) == 0);
  CHECK(new_volume_id("---").rfind("vol-", 0) == 0);
  CHECK(new_volume_id("").rfind("vol-", 0) == 0);
  CHECK(new_volume_id("\xc3\xa9t\xc3\xa9").rfind("t-", 0) == 0);  // "été": non-ASCII bytes are separators
  const std::string long_name(200, 'a');
  const std::string id = new_volume_id(long_name);
  CHECK(id == std::string(24, 'a') + id.substr(24));
  CHECK(id.size() == 24 + 1 + 8);
  // A name cut at 24 characters right after a separator keeps no trailing dash.
  CHECK(new_volume_id(std::string(23, 'b') + "-c").rfind(std::string(23, 'b') + "-", 0) == 0);
  CHECK(new_volume_id(std::string(23, 'b') + "-c").find("--") == std::string::npos);
  std::set<std::string> seen;
  for (const char* name : {"pvc-1234", "PVC_Upper.Case", "---", "", "a b c", "_x", "-x-", "\xff\xfe"}) {
    for (int i = 0; i < 20; ++i) {
      const std::string v = new_volume_id(name);
      CAPTURE(v);
      CHECK(plausible_volume_id(v));
      seen.insert(v);
    }
  }
  CHECK(seen.size() == 8 * 20);  // 8 random hex digits: no repeats
}

TEST_CASE("csi ids: plausible_volume_id accepts [a-z0-9-], 1-64 characters, no leading '-' or '_'") {
  CHECK(plausible_volume_id("pvc-1234-9f3c01aa"));
  CHECK(plausible_volume_id("0"));
  CHECK(plausible_volume_id(std::string(64, 'a')));
  CHECK_FALSE(plausible_volume_id(std::string(65, 'a')));
  CHECK_FALSE(plausible_volume_id(""));
  CHECK_FALSE(plausible_volume_id("-a"));
  CHECK_FALSE(plausible_volume_id("_csi"));
  CHECK_FALSE(plausible_volume_id("Upper"));
  CHECK_FALSE(plausible_volume_id("a/b"));
  CHECK_FALSE(plausible_volume_id(".."));
  CHECK_FALSE(plausible_volume_id("a@b"));
}

TEST_CASE("csi ids: split_snapshot_id takes <volume id>@<engine name> and nothing else") {
  std::string vol, engine;
  REQUIRE(split_snapshot_id("pvc-1-0a0b0c0d@csi-0123456789abcdef", &vol, &engine));
  CHECK(vol == "pvc-1-0a0b0c0d");
  CHECK(engine == "csi-0123456789abcdef");
  CHECK(new_engine_snapshot_name().size() == 4 + 16);
  CHECK(split_snapshot_id("v@" + new_engine_snapshot_name(), &vol, &engine));
  CHECK_FALSE(split_snapshot_id("no-at-sign", &vol, &engine));
  CHECK_FALSE(split_snapshot_id("v@", &vol, &engine));
  CHECK_FALSE(split_snapshot_id("@snap", &vol, &engine));
  CHECK_FALSE(split_snapshot_id("V@snap", &vol, &engine));
  CHECK_FALSE(split_snapshot_id("v@Snap", &vol, &engine));
  CHECK_FALSE(split_snapshot_id("v@a@b", &vol, &engine));
  CHECK_FALSE(split_snapshot_id("v@../x", &vol, &engine));
  CHECK_FALSE(split_snapshot_id("v@" + std::string(129, 'a'), &vol, &engine));
  CHECK(split_snapshot_id("v@" + std::string(128, 'a'), &vol, &engine));
}

TEST_CASE("csi ids: hex_encode") {
  CHECK(hex_encode("") == "");
  CHECK(hex_encode("pvc/1") == "7076632f31");
  CHECK(hex_encode(std::string("\x00\xff", 2)) == "00ff");
}

TEST_CASE("csi registry: volume records and names round-trip, list sorted by id, removes are final") {
  testing::TempDir dir;
  Registry reg(file_store(dir));
  CHECK(*reg.volume_id_by_name("pvc-a") == std::nullopt);
  CHECK(*reg.volume("a-00000001") == std::nullopt);
  CHECK(reg.volumes()->empty());

  VolumeRecord a;
  a.id = "b-00000002";
  a.name = "pvc/b with spaces";
  a.storage_url = "file:///srv/b-00000002";
  a.capacity_bytes = 1ull << 40;
  a.source_snapshot_id = "x-1@csi-1";
  a.created_unix_ms = 1700000000123;
  a.deleted = true;
  VolumeRecord b;
  b.id = "a-00000001";
  b.name = "pvc-a";
  b.storage_url = "file:///srv/a-00000001";
  b.capacity_bytes = 4096;
  b.source_volume_id = "b-00000002";
  REQUIRE(reg.put_volume(a).ok());
  REQUIRE(reg.put_volume(b).ok());
  REQUIRE(reg.put_volume_name(a.name, a.id).ok());

  auto got = reg.volume(a.id);
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  const VolumeRecord& r = **got;
  CHECK(r.id == a.id);
  CHECK(r.name == a.name);
  CHECK(r.storage_url == a.storage_url);
  CHECK(r.capacity_bytes == a.capacity_bytes);
  CHECK(r.source_snapshot_id == a.source_snapshot_id);
  CHECK(r.source_volume_id == "");
  CHECK(r.created_unix_ms == a.created_unix_ms);
  CHECK(r.deleted);
  CHECK((*reg.volume(b.id))->source_volume_id == "b-00000002");
  CHECK(*reg.volume_id_by_name(a.name) == std::optional<std::string>(a.id));
  CHECK(*reg.volume_id_by_name("pvc-a") == std::nullopt);  // b's name was never recorded

  auto all = reg.volumes();
  REQUIRE(all.ok());
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].id == "a-00000001");
  CHECK((*all)[1].id == "b-00000002");

  REQUIRE(reg.remove_volume_name(a.name).ok());
  REQUIRE(reg.remove_volume(a.id).ok());
  CHECK(*reg.volume_id_by_name(a.name) == std::nullopt);
  CHECK(*reg.volume(a.id) == std::nullopt);
  CHECK(reg.volumes()->size() == 1);
}

TEST_CASE("csi registry: snapshot records and names round-trip") {
  testing::TempDir dir;
  Registry reg(file_store(dir));
  SnapshotRecord s;
  s.id = "v-1@csi-2";
  s.name = "snap-1";
  s.volume_id = "v-1";
  s.engine_name = "csi-2";
  s.size_bytes = 8192;
  s.created_unix_ms = 42;
  SnapshotRecord t = s;
  t.id = "v-1@csi-1";
  t.name = "snap-0";
  t.engine_name = "csi-1";
  REQUIRE(reg.put_snapshot(s).ok());
  REQUIRE(reg.put_snapshot(t).ok());
  REQUIRE(reg.put_snapshot_name(s.name, s.id).ok());
  auto got = reg.snapshot(s.id);
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK((*got)->name == "snap-1");
  CHECK((*got)->volume_id == "v-1");
  CHECK((*got)->engine_name == "csi-2");
  CHECK((*got)->size_bytes == 8192);
  CHECK((*got)->created_unix_ms == 42);
  CHECK(*reg.snapshot_id_by_name("snap-1") == std::optional<std::string>("v-1@csi-2"));
  auto all = reg.snapshots();
  REQUIRE(all.ok());
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].id == "v-1@csi-1");
  REQUIRE(reg.remove_snapshot_name(s.name).ok());
  REQUIRE(reg.remove_snapshot(s.id).ok());
  CHECK(*reg.snapshot_id_by_name("snap-1") == std::nullopt);
  CHECK(*reg.snapshot(s.id) == std::nullopt);
}

TEST_CASE("csi registry: an unreadable record is kCorruption naming its key, not a crash or an empty answer") {
  testing::TempDir dir;
  auto store = file_store(dir);
  Registry reg(store);
  auto put = [&](const std::string& key, const std::string& text) {
    REQUIRE(store->put(key, std::as_bytes(std::span(text.data(), text.size()))).ok());
  };
  put("_csi/volumes/v-1.json", "{not json");
  put("_csi/snapshots/v-1@csi-1.json", R"({"id": "v-1@csi-1"})");  // volume_id missing
  put("_csi/names/" + hex_encode("pvc") + ".json", R"({"volume_id": 7})");
  auto v = reg.volume("v-1");
  REQUIRE_FALSE(v.ok());
  CHECK(v.status().is(Status::Code::kCorruption));
  CHECK(v.status().message().find("_csi/volumes/v-1.json") != std::string::npos);
  CHECK(reg.volumes().status().is(Status::Code::kCorruption));
  CHECK(reg.snapshot("v-1@csi-1").status().is(Status::Code::kCorruption));
  CHECK(reg.snapshots().status().is(Status::Code::kCorruption));
  CHECK(reg.volume_id_by_name("pvc").status().is(Status::Code::kCorruption));
}

}  // namespace
}  // namespace portalbd::csi
