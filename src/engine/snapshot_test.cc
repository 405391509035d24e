#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "src/engine/volume.h"
#include "src/store/file_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
namespace fs = std::filesystem;

namespace {

using portalbd::testing::TempDir;

VolumeOptions options(const std::string& dir) {
  VolumeOptions o;
  o.flatten_min_depth = 1;                          // every snapshot chain reads through a flattened base
  o.index_cache_bytes = 16 * kResidentExtentBytes;  // the index cache drops chunks all the time
  o.size_bytes = 4 << 20;
  o.segment_bytes = 128 << 10;
  o.write_buffer_bytes = 1 << 20;
  o.flush_interval_ms = 0;
  o.index_path = dir + "/index.sqlite";
  return o;
}

void fill(BlockDevice& d, uint8_t value, uint64_t offset = 0, uint64_t len = 64 << 10) {
  std::vector<std::byte> buf(len, std::byte{value});
  REQUIRE(d.write(offset, buf, false).ok());
}

uint8_t byte_at(BlockDevice& d, uint64_t offset) {
  std::vector<std::byte> buf(1);
  REQUIRE(d.read(offset, buf).ok());
  return static_cast<uint8_t>(buf[0]);
}

}  // namespace

TEST_SUITE("engine.snapshot") {
  TEST_CASE("create, read the snapshot, restore, and undo the restore") {
    TempDir dir;
    auto v = Volume::Open(std::make_shared<MemoryStore>(), options(dir.path));
    REQUIRE(v.ok());
    Volume& vol = **v;
    fill(vol, 0xA1);
    auto snap = vol.create_snapshot("before-disaster");
    REQUIRE(snap.ok());
    CHECK(snap->written_bytes == (64u << 10));
    fill(vol, 0xB2);  // the disaster
    CHECK(byte_at(vol, 100) == 0xB2);

    auto dev = vol.open_snapshot("before-disaster");
    REQUIRE(dev.ok());
    CHECK((*dev)->read_only());
    CHECK(byte_at(**dev, 100) == 0xA1);
    std::vector<std::byte> one(4096);
    CHECK((*dev)->write(0, one, false).is(Status::Code::kReadOnly));

    auto r = vol.restore_snapshot("before-disaster", false);
    REQUIRE(r.ok());
    CHECK(r->pre_restore.rfind("pre-restore-", 0) == 0);
    CHECK(byte_at(vol, 100) == 0xA1);
    fill(vol, 0xC3, 4096 * 5, 4096);  // writes after a restore land in the new live layer
    CHECK(byte_at(**dev, 4096 * 5) == 0xA1);
    CHECK(byte_at(vol, 4096 * 5) == 0xC3);

    // Undo: the pre-restore snapshot holds the disaster state.
    auto undo = vol.restore_snapshot(r->pre_restore, true);
    REQUIRE(undo.ok());
    CHECK(undo->pre_restore.empty());
    CHECK(byte_at(vol, 100) == 0xB2);

    auto list = vol.list_snapshots();
    REQUIRE(list.ok());
    CHECK(list->size() == 2);  // before-disaster and the pre-restore one: restore deletes nothing
  }

  TEST_CASE("names are checked; duplicates and unknown names have their own errors") {
    TempDir dir;
    auto v = Volume::Open(std::make_shared<MemoryStore>(), options(dir.path));
    REQUIRE(v.ok());
    for (const std::string& bad : std::vector<std::string>{"", "has space", "slash/name", "live", std::string(129, 'a'),
                                                           "ünïcode", "semi;colon"}) {
      CHECK((*v)->create_snapshot(bad).status().is(Status::Code::kInvalidArgument));
    }
    CHECK((*v)->create_snapshot(std::string(128, 'a')).ok());
    REQUIRE((*v)->create_snapshot("a.b_c-1").ok());
    CHECK((*v)->create_snapshot("a.b_c-1").status().is(Status::Code::kAlreadyExists));
    CHECK((*v)->restore_snapshot("nope", false).status().is(Status::Code::kNotFound));
    CHECK((*v)->delete_snapshot("nope").is(Status::Code::kNotFound));
    REQUIRE((*v)->delete_snapshot("a.b_c-1").ok());
    CHECK((*v)->find_snapshot("a.b_c-1").status().is(Status::Code::kNotFound));
  }

  TEST_CASE("an open snapshot device stays readable after its snapshot is deleted") {
    TempDir dir;
    auto v = Volume::Open(std::make_shared<MemoryStore>(), options(dir.path));
    REQUIRE(v.ok());
    fill(**v, 0x42);
    REQUIRE((*v)->create_snapshot("s").ok());
    auto dev = (*v)->open_snapshot("s");
    REQUIRE(dev.ok());
    fill(**v, 0x43);
    REQUIRE((*v)->delete_snapshot("s").ok());
    CHECK(byte_at(**dev, 0) == 0x42);
  }

  TEST_CASE("snapshots survive reopen and a rebuild of the index from storage") {
    TempDir dir;
    auto store = FileStore::Open(dir.path + "/data");
    REQUIRE(store.ok());
    {
      auto v = Volume::Open(*store, options(dir.path));
      REQUIRE(v.ok());
      for (uint8_t gen = 1; gen <= 5; ++gen) {
        fill(**v, gen, gen * 8192, 64 << 10);
        REQUIRE((*v)->create_snapshot("gen" + std::to_string(gen)).ok());
      }
      REQUIRE((*v)->restore_snapshot("gen2", false).ok());
      fill(**v, 0x77, 0, 4096);
      REQUIRE((*v)->close().ok());
    }
    auto check = [&](Volume& v) {
      CHECK(byte_at(v, 0) == 0x77);
      CHECK(byte_at(v, 2 * 8192) == 2);
      CHECK(byte_at(v, 3 * 8192 + 100) == 2);  // gen3 wrote here after gen2: not in the restored state
      for (uint8_t gen = 1; gen <= 5; ++gen) {
        auto dev = v.open_snapshot("gen" + std::to_string(gen));
        REQUIRE(dev.ok());
        CHECK(byte_at(**dev, gen * 8192) == gen);
      }
      auto list = v.list_snapshots();
      REQUIRE(list.ok());
      CHECK(list->size() == 6);
    };
    {
      auto v = Volume::Open(*store, options(dir.path));
      REQUIRE(v.ok());
      check(**v);
    }
    for (auto suffix : {"", "-wal", "-shm"}) fs::remove(dir.path + "/index.sqlite" + suffix);
    auto v = Volume::Open(*store, options(dir.path));
    REQUIRE(v.ok());
    check(**v);
  }

  TEST_CASE("a snapshot under concurrent writers is a consistent cut") {
    TempDir dir;
    auto opts = options(dir.path);
    opts.size_bytes = 16 << 20;
    auto v = Volume::Open(std::make_shared<MemoryStore>(), opts);
    REQUIRE(v.ok());
    Volume& vol = **v;
    constexpr int kThreads = 3;
    constexpr uint64_t kBlocksPerThread = 64;
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&, t] {
        std::vector<std::byte> block(4096);
        for (uint64_t k = 1; !stop; ++k) {  // write k goes to block k % N with stamp k
          std::memcpy(block.data(), &k, sizeof k);
          uint64_t b = t * kBlocksPerThread + k % kBlocksPerThread;
          REQUIRE(vol.write(b * 4096, block, false).ok());
        }
      });
    }
    std::vector<std::string> names;
    for (int i = 0; i < 8; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(15));
      names.push_back("cut" + std::to_string(i));
      REQUIRE(vol.create_snapshot(names.back()).ok());
    }
    stop = true;
    for (auto& w : writers) w.join();

    for (const auto& name : names) {
      auto dev = vol.open_snapshot(name);
      REQUIRE(dev.ok());
      for (int t = 0; t < kThreads; ++t) {
        std::vector<uint64_t> stamps(kBlocksPerThread);
        uint64_t newest = 0;
        for (uint64_t b = 0; b < kBlocksPerThread; ++b) {
          std::vector<std::byte> block(4096);
          REQUIRE((*dev)->read((t * kBlocksPerThread + b) * 4096, block).ok());
          std::memcpy(&stamps[b], block.data(), 8);
          newest = std::max(newest, stamps[b]);
        }
        // Every block must hold the latest of this thread's writes up to `newest`.
        for (uint64_t b = 0; b < kBlocksPerThread; ++b) {
          uint64_t expect = 0;
          if (newest >= b) expect = newest - ((newest - b) % kBlocksPerThread);
          INFO("snapshot " << name << " thread " << t << " block " << b << " newest " << newest);
          REQUIRE(stamps[b] == expect);
        }
      }
    }
  }
}
