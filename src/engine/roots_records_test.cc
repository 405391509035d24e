// Roots records (volume_snapshot.cc): a root change stores a small delta
// over the newest record, a whole record every 64 changes, and storage keeps
// only the last two chains; a start from storage alone rebuilds exactly the
// snapshots the index had, from a whole record and the deltas after it.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "src/engine/volume.h"
#include "src/format/segment.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

VolumeOptions options(const std::string& index_path) {
  VolumeOptions o;
  o.size_bytes = 16 << 20;
  o.segment_bytes = 256 << 10;
  o.write_buffer_bytes = 1 << 20;
  o.flush_interval_ms = 0;
  o.index_path = index_path;
  return o;
}

void write_byte(Volume& v, uint64_t block, uint8_t value) {
  std::vector<std::byte> buf(kBlockSize, std::byte{value});
  REQUIRE(v.write(block * kBlockSize, buf, false).ok());
}

uint8_t read_byte(BlockDevice& d, uint64_t block) {
  std::vector<std::byte> buf(kBlockSize);
  REQUIRE(d.read(block * kBlockSize, buf).ok());
  return static_cast<uint8_t>(buf[0]);
}

// Every roots record storage holds: key -> size.
std::map<std::string, uint64_t> records(ObjectStore& store) {
  std::vector<ObjectInfo> all;
  REQUIRE(store.list("roots/", &all).ok());
  std::map<std::string, uint64_t> out;
  for (const auto& o : all) out[o.key] = o.size;
  return out;
}

// Snapshot name -> (layer, the byte its probe block held).
std::map<std::string, std::pair<uint64_t, uint8_t>> snapshots(Volume& v) {
  auto list = v.list_snapshots();
  REQUIRE(list.ok());
  std::map<std::string, std::pair<uint64_t, uint8_t>> out;
  for (const auto& s : *list) {
    auto dev = v.open_snapshot(s.name);
    REQUIRE(dev.ok());
    out[s.name] = {s.layer, read_byte(**dev, 1)};
  }
  return out;
}

}  // namespace

TEST_SUITE("engine.roots_records") {
  TEST_CASE("300 root changes leave two chains of small records, and storage alone rebuilds the snapshots") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    std::map<std::string, std::pair<uint64_t, uint8_t>> before;
    {
      auto opened = Volume::Open(store, options(dir.path + "/index.sqlite"));
      REQUIRE(opened.ok());
      Volume& v = **opened;
      for (int i = 0; i < 300; i++) {
        write_byte(v, 1, static_cast<uint8_t>(i));
        REQUIRE(v.create_snapshot("s" + std::to_string(i)).ok());
        if (i % 7 == 3) REQUIRE(v.delete_snapshot("s" + std::to_string(i - 1)).ok());
        if (i == 150) REQUIRE(v.restore_snapshot("s99", false).ok());
      }
      before = snapshots(v);
      const auto kept = records(*store);
      INFO("roots records kept: " << kept.size());
      // Today's chain and the one before it, 65 records each at most.
      CHECK(kept.size() <= 2 * 65);
      CHECK(kept.size() < 300);
      // A delta is a few hundred bytes whatever the number of snapshots;
      // only the whole records (one per chain) list them all.
      int big = 0;
      for (const auto& [key, size] : kept) {
        if (size > 1024) big++;
      }
      CHECK(big <= 2);
      REQUIRE(v.close().ok());
    }
    REQUIRE(before.size() > 200);
    // A fresh state dir: the roots come from storage alone.
    auto rebuilt = Volume::Open(store, options(dir.path + "/fresh.sqlite"));
    REQUIRE(rebuilt.ok());
    CHECK(snapshots(**rebuilt) == before);
    CHECK(read_byte(**rebuilt, 1) == 43);  // 299 % 256: the last write, after the restore
    REQUIRE((*rebuilt)->close().ok());
  }

  TEST_CASE("a delta whose base record is gone is damage, not an older state served") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    std::string base_key;
    {
      auto opened = Volume::Open(store, options(dir.path + "/index.sqlite"));
      REQUIRE(opened.ok());
      Volume& v = **opened;
      for (int i = 0; i < 5; i++) {
        write_byte(v, 1, static_cast<uint8_t>(i));
        REQUIRE(v.create_snapshot("s" + std::to_string(i)).ok());
      }
      // The first change of this process stored a whole record; the rest are
      // deltas over it.
      const auto kept = records(*store);
      for (const auto& [key, size] : kept) {
        std::vector<std::byte> raw;
        REQUIRE(store->get(key, &raw).ok());
        if (std::string(reinterpret_cast<const char*>(raw.data()), raw.size()).find("\"format\":2") ==
            std::string::npos) {
          base_key = key;
        }
      }
      REQUIRE(v.close().ok());
    }
    REQUIRE(!base_key.empty());
    REQUIRE(store->remove(base_key).ok());
    auto rebuilt = Volume::Open(store, options(dir.path + "/fresh.sqlite"));
    REQUIRE_FALSE(rebuilt.ok());
    CHECK(rebuilt.status().is(Status::Code::kCorruption));
    INFO(rebuilt.status().ToString());
    CHECK(rebuilt.status().ToString().find("roots") != std::string::npos);
  }
}
