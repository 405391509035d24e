// The flattened base (layer_set.h): reads through it see exactly what a walk
// of the whole chain sees, at every step of folding, across restores, GC
// merges and changes to folded layers; and once it has caught up a read of
// the live volume overlays two maps however many snapshots lie behind.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <thread>

#include "src/engine/layer_set.h"
#include "src/engine/volume.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

// A stored extent whose every block names the layer and block that wrote it
// (sliced() advances block_in_frame with the block).
BlockSource stamp(uint64_t layer, uint64_t lba) {
  BlockSource s;
  s.state = ExtentState::kData;
  s.seq = layer;
  s.block_in_frame = static_cast<uint32_t>(lba);
  return s;
}

// Block -> "layer:block" (or "zero"), from a resolved view.
std::map<uint64_t, std::string> blocks(const ExtentMap<BlockSource>& view) {
  std::map<uint64_t, std::string> out;
  for (const auto& [start, node] : view.entries()) {
    for (uint64_t i = 0; i < node.length; i++) {
      const BlockSource b = node.value.sliced(i);
      out[start + i] = b.state == ExtentState::kData ? std::to_string(b.seq) + ":" + std::to_string(b.block_in_frame)
                                                     : std::string("zero");
    }
  }
  return out;
}

// What a read of [lba, lba+n) from `top` sees through the base, and how many
// maps it overlaid.
std::map<uint64_t, std::string> through_base(LayerSet& set, const Layer* top, uint64_t lba, uint64_t n,
                                             size_t* maps = nullptr) {
  MutexLock lock(&set.mu());
  ExtentMap<BlockSource> view;
  std::vector<const Layer*> above;
  const Layer* base = set.read_path_locked(top, &above);
  if (base != nullptr) {
    REQUIRE(
        base->visit(lba, n, [&](uint64_t s, uint64_t len, const BlockSource& src) { view.assign(s, len, src); }).ok());
  }
  REQUIRE(LayerSet::overlay_chain(above, lba, n, &view).ok());
  if (maps != nullptr) *maps = above.size() + (base != nullptr ? 1 : 0);
  return blocks(view);
}

// The same by walking the whole chain: the model.
std::map<uint64_t, std::string> by_walk(LayerSet& set, const Layer* top, uint64_t lba, uint64_t n) {
  MutexLock lock(&set.mu());
  ExtentMap<BlockSource> view;
  REQUIRE(LayerSet::overlay_chain(set.chain_locked(top), lba, n, &view).ok());
  return blocks(view);
}

constexpr uint64_t kBlocks = 4096;

void write_some(LayerSet& set, std::mt19937_64& rng, int count) {
  MutexLock lock(&set.mu());
  Layer& live = *set.live_locked();
  for (int i = 0; i < count; i++) {
    const uint64_t lba = rng() % (kBlocks - 64);
    const uint64_t n = 1 + rng() % 48;
    if (rng() % 8 == 0) {
      BlockSource zero;
      zero.state = ExtentState::kZero;
      live.assign(lba, n, zero);
    } else {
      live.assign(lba, n, stamp(live.id, lba));
    }
  }
}

bool step(LayerSet& set, size_t max_extents) {
  MutexLock lock(&set.mu());
  return set.flatten_step_locked(max_extents, [](const Layer&) { return false; });
}

void settle(LayerSet& set) {
  for (int i = 0; i < 1000000 && step(set, 64); i++) {
  }
}

// Every layer `set` names, by id (snapshot tops for the checks).
std::vector<const Layer*> named(LayerSet& set) {
  MutexLock lock(&set.mu());
  std::vector<const Layer*> out;
  for (const auto& [id, layer] : set.by_id_locked()) out.push_back(layer.get());
  return out;
}

void check_reads(LayerSet& set, std::mt19937_64& rng, int reads) {
  const std::vector<const Layer*> tops = named(set);
  for (int i = 0; i < reads; i++) {
    const Layer* top = rng() % 2 == 0 ? nullptr : tops[rng() % tops.size()];
    const uint64_t lba = rng() % kBlocks;
    const uint64_t n = 1 + rng() % std::min<uint64_t>(256, kBlocks - lba);
    const auto got = through_base(set, top, lba, n);
    const auto want = by_walk(set, top, lba, n);
    REQUIRE(got == want);
  }
}

// The first layer of the volume (id 1), live.
void start_root(LayerSet& set) {
  MutexLock lock(&set.mu());
  set.start_live_locked(1, nullptr);
}

std::shared_ptr<Layer> freeze(LayerSet& set, uint64_t id) {
  MutexLock lock(&set.mu());
  return set.start_live_locked(id, set.live_locked());
}

}  // namespace

TEST_SUITE("engine.flat_base") {
  TEST_CASE("reads through the base match a walk of the whole chain at every step") {
    std::mt19937_64 rng(42);
    LayerSet set;
    set.set_flatten_min_depth(3);
    uint64_t next_id = 2;
    start_root(set);
    for (int round = 0; round < 60; round++) {
      write_some(set, rng, 20);
      freeze(set, next_id++);
      // Fold a little (a few extents a step), then check, so reads land in
      // the middle of folds too.
      for (int s = 0; s < 3; s++) step(set, 7);
      check_reads(set, rng, 30);
      if (round % 15 == 14) {
        // A restore: the new live layer grows from an older snapshot, so the
        // chain no longer passes through the base's top.
        const auto tops = named(set);
        MutexLock lock(&set.mu());
        set.start_live_locked(next_id++, set.find_locked(tops[rng() % (tops.size() / 2)]->id));
      }
    }
    settle(set);
    check_reads(set, rng, 200);
    MutexLock lock(&set.mu());
    CHECK(set.flat_stats_locked().folds > 0);
    CHECK(set.flat_stats_locked().rebuilds > 0);  // the restores left the base behind
  }

  TEST_CASE("a changed folded layer drops the base, and a merge keeps reads right") {
    std::mt19937_64 rng(7);
    LayerSet set;
    set.set_flatten_min_depth(2);
    uint64_t next_id = 2;
    start_root(set);
    std::vector<std::shared_ptr<Layer>> frozen;
    for (int i = 0; i < 10; i++) {
      write_some(set, rng, 30);
      {
        MutexLock lock(&set.mu());
        frozen.push_back(set.live_locked());
      }
      freeze(set, next_id++);
    }
    settle(set);
    {
      MutexLock lock(&set.mu());
      REQUIRE(set.flat_stats_locked().top_layer == frozen.back()->id);
      // GC moved blocks of a folded layer (a rewrite): their old places may
      // be gone soon, so the base must not keep them.
      frozen[3]->assign(100, 8, stamp(999, 100));
      set.layer_changed_locked(*frozen[3]);
      CHECK(set.flat_stats_locked().top_layer == 0);
      CHECK(set.flat_stats_locked().extents == 0);
    }
    check_reads(set, rng, 100);
    settle(set);
    check_reads(set, rng, 100);
    {
      // GC's merge of a rootless layer into its only child (gc.cc): the
      // child's map becomes parent's overlaid with its own, and its parent
      // the grandparent. Merge the base's top into the layer above it.
      MutexLock lock(&set.mu());
      const std::shared_ptr<Layer> parent = frozen.back();
      const std::shared_ptr<Layer> child = set.live_locked();
      ExtentMap<BlockSource> merged = parent->map;
      for (const auto& [lba, node] : child->map.entries()) merged.assign(lba, node.length, node.value);
      child->map = std::move(merged);
      child->recount();
      child->parent = parent->parent;
      set.forget_locked(parent->id);
    }
    check_reads(set, rng, 100);
    settle(set);
    check_reads(set, rng, 100);
  }

  TEST_CASE("2,000 snapshots: a read of the live volume overlays two maps") {
    std::mt19937_64 rng(3);
    LayerSet set;
    uint64_t next_id = 2;
    start_root(set);
    for (int i = 0; i < 2000; i++) {
      write_some(set, rng, 2);
      freeze(set, next_id++);
      if (i % 100 == 0) settle(set);  // the flattener keeps up as snapshots come
    }
    size_t maps = 0;
    through_base(set, nullptr, 0, kBlocks, &maps);
    CHECK(maps > 2);  // not caught up yet: a walk of what came since
    settle(set);
    through_base(set, nullptr, 0, kBlocks, &maps);
    CHECK(maps == 2);  // the base and the live layer
    check_reads(set, rng, 50);
    // Without the base the same read walks every layer.
    CHECK(by_walk(set, nullptr, 0, kBlocks) == through_base(set, nullptr, 0, kBlocks));
    MutexLock lock(&set.mu());
    CHECK(set.chain_locked(nullptr).size() == 2001);
  }

  TEST_CASE("shallow chains get no base") {
    LayerSet set;  // default min depth 16
    std::mt19937_64 rng(5);
    uint64_t next_id = 2;
    start_root(set);
    for (int i = 0; i < 10; i++) {
      write_some(set, rng, 10);
      freeze(set, next_id++);
    }
    settle(set);
    MutexLock lock(&set.mu());
    CHECK(set.flat_stats_locked().extents == 0);
    CHECK(set.flat_stats_locked().top_layer == 0);
  }

  TEST_CASE("a volume with 2,000 snapshots resolves reads in two maps, with the data of each") {
    portalbd::testing::TempDir dir;
    VolumeOptions o;
    o.size_bytes = 64 << 20;
    o.segment_bytes = 1 << 20;
    o.write_buffer_bytes = 4 << 20;
    o.flush_interval_ms = 0;
    o.index_path = dir.path + "/index.sqlite";
    o.flatten_min_depth = 4;
    auto opened = Volume::Open(std::make_shared<MemoryStore>(), o);
    REQUIRE(opened.ok());
    Volume& v = **opened;
    std::mt19937_64 rng(11);
    std::vector<uint8_t> model(o.size_bytes / kBlockSize, 0);  // the byte every block is filled with
    auto write = [&](uint64_t block, uint8_t value) {
      std::vector<std::byte> buf(kBlockSize, std::byte{value});
      REQUIRE(v.write(block * kBlockSize, buf, false).ok());
      model[block] = value;
    };
    for (uint64_t b = 0; b < model.size(); b += 7) write(b, 1);
    constexpr int kSnapshots = 2000;
    std::map<int, std::pair<uint64_t, uint8_t>> probes;  // snapshot -> a block and its value then
    for (int i = 0; i < kSnapshots; i++) {
      const uint64_t block = rng() % model.size();
      write(block, static_cast<uint8_t>(2 + i % 250));
      REQUIRE(v.create_snapshot("s" + std::to_string(i)).ok());
      if (i % 250 == 0) probes[i] = {block, model[block]};
    }
    // The flattener catches up in the background.
    for (int i = 0; i < 600; i++) {
      const VolumeStats s = v.stats();
      if (s.flat.folds >= kSnapshots && s.flat.top_layer != 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const VolumeStats before = v.stats();
    CHECK(before.chain_depth == kSnapshots);
    REQUIRE(before.flat.top_layer != 0);
    std::vector<std::byte> buf(kBlockSize);
    for (int i = 0; i < 2000; i++) {
      const uint64_t block = rng() % model.size();
      REQUIRE(v.read(block * kBlockSize, buf).ok());
      REQUIRE(static_cast<uint8_t>(buf[0]) == model[block]);
    }
    const VolumeStats after = v.stats();
    const double per_read = static_cast<double>(after.resolve_maps - before.resolve_maps) /
                            static_cast<double>(after.resolves - before.resolves);
    INFO("maps per read: " << per_read);
    CHECK(per_read <= 2.0);
    // Snapshots still read what they held (through their own chains).
    for (const auto& [i, probe] : probes) {
      auto snap = v.open_snapshot("s" + std::to_string(i));
      REQUIRE(snap.ok());
      REQUIRE((*snap)->read(probe.first * kBlockSize, buf).ok());
      CHECK(static_cast<uint8_t>(buf[0]) == probe.second);
    }
    REQUIRE(v.close().ok());
  }
}
