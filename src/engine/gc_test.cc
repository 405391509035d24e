#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>

#include "src/engine/volume.h"
#include "src/store/counting_store.h"
#include "src/store/file_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/gate_store.h"
#include "tests/unit/noise.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
namespace fs = std::filesystem;

namespace {

using portalbd::testing::GateStore;
using portalbd::testing::TempDir;

VolumeOptions options(const std::string& dir) {
  VolumeOptions o;
  o.flatten_min_depth = 1;                          // every snapshot chain reads through a flattened base
  o.index_cache_bytes = 16 * kResidentExtentBytes;  // the index cache drops chunks all the time
  o.size_bytes = 64 << 20;
  o.segment_bytes = 1 << 20;
  o.write_buffer_bytes = 4 << 20;
  o.flush_interval_ms = 0;
  o.cache_bytes = 1 << 20;
  o.index_path = dir + "/index.sqlite";
  return o;
}

using portalbd::testing::noise;

std::vector<std::byte> read_all(BlockDevice& d, uint64_t len) {
  std::vector<std::byte> out(len);
  REQUIRE(d.read(0, out).ok());
  return out;
}

uint64_t stored_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (auto& e : fs::recursive_directory_iterator(dir + "/data/segments")) n += e.file_size();
  return n;
}

}  // namespace

TEST_SUITE("engine.gc") {
  TEST_CASE("a pruned run of 300 snapshots merges in one step, and the volume and the kept snapshot read the same") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    std::vector<std::byte> kept_view;
    {
      auto v = Volume::Open(store, options(dir.path));
      REQUIRE(v.ok());
      Volume& vol = **v;
      REQUIRE(vol.write(0, noise(1 << 20, 1), true).ok());
      for (int i = 0; i < 300; i++) {
        REQUIRE(vol.write((1 + i % 50) * 65536, noise(4096, 100 + i), false).ok());
        REQUIRE(vol.create_snapshot("s" + std::to_string(i)).ok());
      }
      const auto live_before = read_all(vol, 4 << 20);
      auto kept = vol.open_snapshot("s150");
      REQUIRE(kept.ok());
      kept_view = read_all(**kept, 4 << 20);
      kept->reset();
      for (int i = 0; i < 300; i++) {
        if (i != 150) REQUIRE(vol.delete_snapshot("s" + std::to_string(i)).ok());
      }
      GcOptions gc;
      gc.grace_ms = 0;
      auto report = vol.gc(gc);
      REQUIRE(report.ok());
      // Two runs: the 150 layers under s150, and the 149 between it and live.
      CHECK(report->layers_merged == 299);
      CHECK(vol.stats().chain_depth == 1);
      CHECK(read_all(vol, 4 << 20) == live_before);
      auto again = vol.open_snapshot("s150");
      REQUIRE(again.ok());
      CHECK(read_all(**again, 4 << 20) == kept_view);
      REQUIRE(vol.close().ok());
    }
    // From storage alone: the same snapshot, the same data.
    VolumeOptions fresh = options(dir.path);
    fresh.index_path = dir.path + "/fresh.sqlite";
    auto v = Volume::Open(store, fresh);
    REQUIRE(v.ok());
    auto snap = (*v)->open_snapshot("s150");
    REQUIRE(snap.ok());
    CHECK(read_all(**snap, 4 << 20) == kept_view);
    REQUIRE((*v)->close().ok());
  }

  TEST_CASE("overwrites, snapshots and deleted snapshots: space comes back, survivors stay intact") {
    TempDir dir;
    auto store = FileStore::Open(dir.path + "/data");
    REQUIRE(store.ok());
    const uint64_t region = 8 << 20;
    std::map<std::string, std::vector<std::byte>> expect;
    {
      auto v = Volume::Open(*store, options(dir.path));
      REQUIRE(v.ok());
      Volume& vol = **v;
      for (int gen = 1; gen <= 5; ++gen) {
        auto data = noise(region, gen);
        // Overwrite in pieces, some twice within one generation.
        for (uint64_t off = 0; off < region; off += 1 << 20) {
          REQUIRE(vol.write(off, std::span(data).subspan(off, 1 << 20), false).ok());
        }
        REQUIRE(vol.write(0, std::span(data).subspan(0, 1 << 20), false).ok());
        std::string name = "gen" + std::to_string(gen);
        REQUIRE(vol.create_snapshot(name).ok());
        expect[name] = read_all(vol, region);
      }
      REQUIRE(vol.trim(4 << 20, 2 << 20, true).ok());
      expect["live"] = read_all(vol, region);
      REQUIRE(vol.delete_snapshot("gen1").ok());
      REQUIRE(vol.delete_snapshot("gen2").ok());
      REQUIRE(vol.delete_snapshot("gen4").ok());
      expect.erase("gen1");
      expect.erase("gen2");
      expect.erase("gen4");

      const uint64_t before = stored_bytes(dir.path);
      GcOptions gc;
      gc.grace_ms = 0;  // delete as soon as a checkpoint covers it
      auto first = vol.gc(gc);
      REQUIRE(first.ok());
      CHECK(first->layers_merged >= 2);
      auto second = vol.gc(gc);  // doomed in the first pass, deleted in this one
      REQUIRE(second.ok());
      CHECK(second->segments_deleted > 0);
      const uint64_t after = stored_bytes(dir.path);
      INFO("stored before " << before << " after " << after << " live " << second->bytes_live);
      CHECK(after < before);
      CHECK(static_cast<double>(after) <= 1.3 * static_cast<double>(second->bytes_live));
      CHECK(second->bytes_live == 2 * region);  // gen3 and gen5; live only adds a trim (no data)

      for (const auto& [name, bytes] : expect) {
        if (name == "live") {
          CHECK(read_all(vol, region) == bytes);
        } else {
          auto dev = vol.open_snapshot(name);
          REQUIRE(dev.ok());
          CHECK(read_all(**dev, region) == bytes);
        }
      }
      REQUIRE(vol.close().ok());
    }
    // A fresh index rebuilds from the checkpoint GC wrote plus newer segments.
    for (auto suffix : {"", "-wal", "-shm"}) fs::remove(dir.path + "/index.sqlite" + suffix);
    auto v = Volume::Open(*store, options(dir.path));
    REQUIRE(v.ok());
    CHECK(read_all(**v, region) == expect["live"]);
    for (const auto& name : {"gen3", "gen5"}) {
      auto dev = (*v)->open_snapshot(name);
      REQUIRE(dev.ok());
      CHECK(read_all(**dev, region) == expect[name]);
    }
    CHECK((*v)->find_snapshot("gen1").status().is(Status::Code::kNotFound));
  }

  TEST_CASE("the grace period and open readers keep segments alive") {
    TempDir dir;
    auto store = FileStore::Open(dir.path + "/data");
    REQUIRE(store.ok());
    auto v = Volume::Open(*store, options(dir.path));
    REQUIRE(v.ok());
    Volume& vol = **v;
    auto a = noise(2 << 20, 1);
    REQUIRE(vol.write(0, a, false).ok());
    REQUIRE(vol.create_snapshot("old").ok());
    auto reader = vol.open_snapshot("old");
    REQUIRE(reader.ok());
    auto b = noise(2 << 20, 2);
    REQUIRE(vol.write(0, b, true).ok());
    REQUIRE(vol.delete_snapshot("old").ok());

    GcOptions gc;
    gc.grace_ms = 0;
    REQUIRE(vol.gc(gc).ok());
    REQUIRE(vol.gc(gc).ok());
    // The reader opened before the delete still reads the old data.
    CHECK(read_all(**reader, 2 << 20) == a);
    reader->reset();
    auto pass = vol.gc(gc);
    REQUIRE(pass.ok());
    pass = vol.gc(gc);
    REQUIRE(pass.ok());
    CHECK(pass->bytes_live == (2u << 20));
    CHECK(read_all(vol, 2 << 20) == b);

    // With a long grace period nothing is deleted yet.
    auto c = noise(2 << 20, 3);
    REQUIRE(vol.write(0, c, true).ok());
    GcOptions slow;
    slow.grace_ms = 3600 * 1000;
    auto r1 = vol.gc(slow);
    REQUIRE(r1.ok());
    auto r2 = vol.gc(slow);
    REQUIRE(r2.ok());
    CHECK(r2->segments_deleted == 0);
    CHECK(r2->segments_waiting > 0);
    CHECK(read_all(vol, 2 << 20) == c);
  }

  TEST_CASE("a pass that changes nothing still checkpoints once enough segments were written since the last") {
    TempDir dir;
    auto store = FileStore::Open(dir.path + "/data");
    REQUIRE(store.ok());
    auto v = Volume::Open(*store, options(dir.path));
    REQUIRE(v.ok());
    Volume& vol = **v;
    GcOptions gc;
    gc.checkpoint_after_seqs = 8;
    // Fresh writes only (nothing to reclaim), one segment per flush.
    auto write_segments = [&](int n, uint64_t first) {
      for (int i = 0; i < n; ++i) {
        REQUIRE(vol.write((first + i) * 65536, noise(65536, first + i), false).ok());
        REQUIRE(vol.flush().ok());
      }
    };
    write_segments(3, 0);
    auto r1 = vol.gc(gc);
    REQUIRE(r1.ok());
    CHECK(r1->checkpoint_seq == 0);  // 3 < 8 since the start
    write_segments(6, 3);
    auto r2 = vol.gc(gc);
    REQUIRE(r2.ok());
    CHECK(r2->checkpoint_seq >= 9);  // 9 >= 8: checkpointed
    CHECK(vol.stats().last_checkpoint_seq == r2->checkpoint_seq);
    auto r3 = vol.gc(gc);
    REQUIRE(r3.ok());
    CHECK(r3->checkpoint_seq == 0);  // nothing new since
    char key[64];
    std::snprintf(key, sizeof key, "checkpoints/%016llx.sqlite.zst",
                  static_cast<unsigned long long>(r2->checkpoint_seq));
    CHECK((*store)->head(key).ok());
  }

  TEST_CASE("a pass over an unchanged volume sends nothing to the store, until something is due") {
    // Issue 26: an idle volume costs (almost) nothing. Passes on a timer
    // that find nothing new must not list, read or write storage.
    TempDir dir;
    auto file = FileStore::Open(dir.path + "/data");
    REQUIRE(file.ok());
    auto counted = std::make_shared<CountingStore>(*file);
    auto requests = [&] { return counted->counts(CountingStore::kVolume).requests(); };
    auto v = Volume::Open(counted, options(dir.path));
    REQUIRE(v.ok());
    Volume& vol = **v;
    GcOptions gc;
    gc.grace_ms = 3600 * 1000;
    gc.checkpoint_after_seqs = 4;

    // Garbage that waits out its grace period: the pass that dooms it checkpoints.
    REQUIRE(vol.write(0, noise(1 << 20, 1), true).ok());
    REQUIRE(vol.write(0, noise(1 << 20, 2), true).ok());
    auto doomed = vol.gc(gc);
    REQUIRE(doomed.ok());
    CHECK(doomed->segments_doomed == 1);
    CHECK(doomed->checkpoint_seq > 0);
    CHECK(doomed->next_delete_unix_ms > 0);
    uint64_t before = requests();
    for (int i = 0; i < 3; ++i) {
      auto idle = vol.gc(gc);
      REQUIRE(idle.ok());
      CHECK(idle->segments_waiting == 1);
      CHECK(idle->next_delete_unix_ms == doomed->next_delete_unix_ms);  // still reported: the caller's timer
      CHECK(idle->checkpoint_seq == 0);
    }
    CHECK_MESSAGE(requests() == before, "idle passes sent " << requests() - before << " store requests");

    // Its grace period over, the next pass deletes it; then quiet again.
    GcOptions now = gc;
    now.grace_ms = 0;
    auto deleted = vol.gc(now);
    REQUIRE(deleted.ok());
    CHECK(deleted->segments_deleted == 1);
    CHECK(requests() > before);
    before = requests();
    for (int i = 0; i < 3; ++i) REQUIRE(vol.gc(now).ok());
    CHECK_MESSAGE(requests() == before, "idle passes sent " << requests() - before << " store requests");

    // A write is a change: fresh data, nothing to reclaim, and a checkpoint
    // once checkpoint_after_seqs are used; not before, and only once.
    for (int i = 0; i < 5; ++i) REQUIRE(vol.write((4 + i) * 65536, noise(65536, 10 + i), true).ok());
    before = requests();
    auto due = vol.gc(gc);
    REQUIRE(due.ok());
    CHECK(due->checkpoint_seq > 0);
    CHECK(requests() > before);
    before = requests();
    for (int i = 0; i < 3; ++i) REQUIRE(vol.gc(gc).ok());
    CHECK_MESSAGE(requests() == before, "idle passes sent " << requests() - before << " store requests");

    // A deleted snapshot is a change too.
    REQUIRE(vol.create_snapshot("s").ok());
    REQUIRE(vol.write(0, noise(1 << 20, 3), true).ok());
    REQUIRE(vol.delete_snapshot("s").ok());
    auto merged = vol.gc(gc);
    REQUIRE(merged.ok());
    CHECK(merged->layers_merged + merged->layers_dropped > 0);
    before = requests();
    for (int i = 0; i < 3; ++i) REQUIRE(vol.gc(gc).ok());
    CHECK_MESSAGE(requests() == before, "idle passes sent " << requests() - before << " store requests");
    REQUIRE(vol.close().ok());
  }

  TEST_CASE("a FLUSH is answered while a GC pass deletes segments") {
    // Before, a pass held flush_mu_ from start to end, so every FLUSH waited
    // for all of its rewrites, its checkpoint and its deletions.
    TempDir dir;
    auto gate = std::make_shared<GateStore>(std::make_shared<MemoryStore>());
    gate->open();  // PUTs pass; only the DELETEs below are held
    auto v = Volume::Open(gate, options(dir.path));
    REQUIRE(v.ok());
    Volume& vol = **v;
    REQUIRE(vol.write(0, noise(1 << 20, 1), true).ok());
    auto b = noise(1 << 20, 2);
    REQUIRE(vol.write(0, b, true).ok());  // the first segment is now garbage
    GcOptions gc;
    gc.grace_ms = 0;
    REQUIRE(vol.gc(gc).ok());  // dooms it

    gate->hold_removes();
    auto pass = std::async(std::launch::async, [&] { return vol.gc(gc); });  // deletes it
    REQUIRE(gate->wait_remove_held());
    auto c = noise(64 << 10, 3);
    auto flushed = std::async(std::launch::async, [&] {
      Status st = vol.write(2 << 20, c, false);
      return st.ok() ? vol.flush() : st;
    });
    const bool answered = flushed.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    gate->release_removes();  // never leave the pass hanging, whatever happened
    CHECK_MESSAGE(answered, "FLUSH waited for the GC pass");
    CHECK(flushed.get().ok());
    auto report = pass.get();
    REQUIRE(report.ok());
    CHECK(report->segments_deleted == 1);
    CHECK(read_all(vol, 1 << 20) == b);
    std::vector<std::byte> got(c.size());
    REQUIRE(vol.read(2 << 20, got).ok());
    CHECK(got == c);
    REQUIRE(vol.close().ok());
  }
}
