// An index that storage has moved past (issue 18, "a stale state dir"): a
// second writer, or a lost SQLite WAL, leaves the old state dir behind
// storage. open() must bring it forward or rebuild it, never serve it, and
// GC on it must never delete what storage still reaches.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <map>

#include "src/engine/volume.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kBlocks = 256;  // 1 MiB

VolumeOptions options(const std::string& index_path) {
  VolumeOptions o;
  o.size_bytes = kBlocks * kBlockSize;
  o.segment_bytes = 1 << 20;
  o.flush_interval_ms = 0;
  o.cache_bytes = 0;
  o.index_path = index_path;
  return o;
}

std::shared_ptr<Volume> open(const std::shared_ptr<ObjectStore>& store, const std::string& index) {
  auto v = Volume::Open(store, options(index));
  REQUIRE_MESSAGE(v.ok(), v.status().ToString());
  return *v;
}

void write(Volume& v, uint64_t lba, uint64_t n, uint8_t fill) {
  std::vector<std::byte> buf(n * kBlockSize, std::byte{fill});
  REQUIRE(v.write(lba * kBlockSize, buf, false).ok());
}

// The whole device and every snapshot, as bytes.
struct View {
  std::vector<std::byte> live;
  std::map<std::string, std::vector<std::byte>> snaps;
  bool operator==(const View&) const = default;
};

View view(Volume& v) {
  View out;
  out.live.resize(kBlocks * kBlockSize);
  REQUIRE(v.read(0, out.live).ok());
  auto listed = v.list_snapshots();
  REQUIRE(listed.ok());
  for (const auto& info : *listed) {
    auto dev = v.open_snapshot(info.name);
    REQUIRE(dev.ok());
    auto& bytes = out.snaps[info.name];
    bytes.resize(kBlocks * kBlockSize);
    REQUIRE((*dev)->read(0, bytes).ok());
  }
  return out;
}

std::string names(const View& v) {
  std::string s;
  for (const auto& [n, b] : v.snaps) s += n + " ";
  return s;
}

// Writer B's session on storage that writer A left: deletes A's snapshot so
// GC merges its layer away and deletes the segments it overwrote (grace 0),
// then takes a snapshot and writes more. Returns what B acknowledged.
View second_writer_moves_on(const std::shared_ptr<ObjectStore>& store, const std::string& index,
                            const std::function<void()>& before_close = nullptr) {
  auto b = open(store, index);
  REQUIRE(b->delete_snapshot("s1").ok());
  // Overwrites all of A's second segment (garbage, deleted below) and a
  // quarter of its first, which stays: GC merges s1's layer into the live
  // one without moving that segment's blocks. An index that missed the
  // merge finds them in a layer storage no longer has.
  write(*b, 0, 8, 0xB1);
  write(*b, 16, 8, 0xB1);
  write(*b, 100, 4, 0xB1);
  REQUIRE(b->flush().ok());
  GcOptions gc;
  gc.grace_ms = 0;
  gc.rewrite_live_ratio = 0.3;
  auto first = b->gc(gc);
  REQUIRE_MESSAGE(first.ok(), first.status().ToString());
  CHECK(first->layers_merged >= 1);
  auto second = b->gc(gc);
  REQUIRE(second.ok());
  CHECK(first->segments_deleted + second->segments_deleted >= 1);
  REQUIRE(b->create_snapshot("s2").ok());
  write(*b, 40, 4, 0xB2);
  REQUIRE(b->flush().ok());
  View acknowledged = view(*b);
  if (before_close) before_close();
  REQUIRE(b->close().ok());
  return acknowledged;
}

// Writer A: data, snapshot s1, newer data over part of it.
void first_writer(Volume& a) {
  write(a, 0, 32, 0xA1);
  REQUIRE(a.flush().ok());
  REQUIRE(a.create_snapshot("s1").ok());
  write(a, 16, 8, 0xA2);
  write(a, 100, 4, 0xA3);
  REQUIRE(a.flush().ok());
}

// After the stale index is opened: the same volume as B left it; GC on it
// deletes nothing B's volume needs (a rebuild from storage alone agrees).
void check_caught_up(const std::shared_ptr<ObjectStore>& store, const std::string& stale_index,
                     const std::string& fresh_index, const View& acknowledged) {
  auto a = open(store, stale_index);
  View seen = view(*a);
  CHECK_MESSAGE(seen.live == acknowledged.live, "the reopened old index serves a volume B did not leave");
  CHECK_MESSAGE(seen.snaps == acknowledged.snaps,
                "snapshots: [" << names(seen) << "] want [" << names(acknowledged) << "]");
  GcOptions gc;
  gc.grace_ms = 0;
  gc.rewrite_live_ratio = 0.9;
  REQUIRE(a->gc(gc).ok());
  REQUIRE(a->gc(gc).ok());
  CHECK(view(*a) == acknowledged);
  REQUIRE(a->close().ok());
  a.reset();
  auto rebuilt = open(store, fresh_index);
  View after = view(*rebuilt);
  CHECK_MESSAGE(after.live == acknowledged.live, "GC on the old index deleted data storage still reached");
  CHECK(after.snaps == acknowledged.snaps);
}

}  // namespace

TEST_SUITE("engine.stale_index") {
  TEST_CASE("an index behind another writer's snapshot delete, GC and snapshot is rebuilt, not served") {
    testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    const std::string index_a = dir.path + "/a.sqlite";
    {
      auto a = open(store, index_a);
      first_writer(*a);
      REQUIRE(a->close().ok());
    }
    const View acknowledged = second_writer_moves_on(store, dir.path + "/b.sqlite");
    check_caught_up(store, index_a, dir.path + "/c.sqlite", acknowledged);
  }

  TEST_CASE("an index that lost its WAL is rebuilt, not served") {
    testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    const std::string index = dir.path + "/index.sqlite";
    const std::string lost = dir.path + "/lost-wal.sqlite";
    {
      auto a = open(store, index);
      first_writer(*a);
      REQUIRE(a->close().ok());  // SQLite folds the WAL into the database file
    }
    // The same state dir moves on; then a kill -9 loses the WAL, leaving the
    // database file as the last session left it.
    const View acknowledged = second_writer_moves_on(store, index, [&] { fs::copy_file(index, lost); });
    for (auto suffix : {"", "-wal", "-shm"}) fs::remove(index + suffix);
    fs::rename(lost, index);
    check_caught_up(store, index, dir.path + "/fresh.sqlite", acknowledged);
  }
}
