// The index stays on disk (layer_set.h): a layer set over an index of a
// million extents opens with none of them in memory, reads load only the
// chunks they touch, the cache keeps to its budget, and what reads see is
// what the index says, block for block.
#include <doctest/doctest.h>

#include <random>
#include <string>

#include "meta/index.h"
#include "src/engine/layer_set.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using portalbd::testing::TempDir;

namespace {

constexpr uint64_t kBaseExtents = 1'000'000;  // layer 1: one block at every even lba
constexpr uint64_t kTopExtents = 5'000;       // layer 2 (live): some odd lbas

meta::MappedExtent row(uint64_t lba, uint64_t tag) {
  meta::MappedExtent x;
  x.lba = lba;
  x.nblocks = 1;
  x.state = ExtentState::kData;
  x.seq = 1 + tag / 4096;
  x.frame.offset = tag;  // names the row: block lba reads "tag"
  return x;
}

}  // namespace

TEST_SUITE("engine.index_cache") {
  TEST_CASE("a million extents: open loads none, reads load the chunks they touch, within the budget") {
    TempDir dir;
    auto index = meta::Index::Open(dir.path + "/index.sqlite");
    REQUIRE(index.ok());
    REQUIRE((*index)->live_layer().ok());
    std::vector<meta::MappedExtent> base;
    base.reserve(kBaseExtents);
    for (uint64_t i = 0; i < kBaseExtents; i++) base.push_back(row(2 * i, i));
    REQUIRE((*index)->replace_layer(1, 0, base, {}).ok());
    meta::RootRecord snap{"s", 1, "snapshot", "u", 1};
    REQUIRE((*index)->create_snapshot(snap, 2, 1).ok());
    std::mt19937_64 rng(7);
    std::map<uint64_t, uint64_t> top;  // odd lba -> tag
    while (top.size() < kTopExtents) top.emplace(2 * (rng() % kBaseExtents) + 1, kBaseExtents + top.size());
    std::vector<meta::MappedExtent> top_rows;
    for (const auto& [lba, tag] : top) top_rows.push_back(row(lba, tag));
    REQUIRE((*index)->replace_layer(2, 1, top_rows, {}).ok());
    auto layers = (*index)->list_layers();
    REQUIRE(layers.ok());

    LayerSet set;
    constexpr uint64_t kBudgetExtents = 20'000;
    MutexLock lock(&set.mu());
    REQUIRE(set.set_index_locked(index->get(), kBudgetExtents * kResidentExtentBytes).ok());
    REQUIRE(set.load_locked(*layers, 2, [](Layer&) { return Status::Corruption("paged layers are not filled"); }).ok());

    IndexCacheStats s = set.index_cache_stats_locked();
    CHECK(s.chunk_loads == 0);
    CHECK(s.chunks_loaded == 0);
    CHECK(s.rows_loaded == 0);
    CHECK(set.find_locked(1)->map.size() == 0);
    CHECK(set.find_locked(1)->data_bytes == kBaseExtents * kBlockSize);  // from the index, not by counting
    CHECK(set.find_locked(2)->data_bytes == kTopExtents * kBlockSize);

    // Random reads of 8 blocks across the whole device, checked block by block.
    constexpr int kReads = 3000;
    uint64_t mismatches = 0;
    for (int r = 0; r < kReads; r++) {
      const uint64_t lba = rng() % (2 * kBaseExtents - 8);
      ExtentMap<BlockSource> view;
      REQUIRE(LayerSet::overlay_chain(set.chain_locked(nullptr), lba, 8, &view).ok());
      std::map<uint64_t, uint64_t> seen;
      for (const auto& [start, node] : view.entries()) {
        for (uint64_t i = 0; i < node.length; i++) seen[start + i] = node.value.sliced(i).frame.offset;
      }
      for (uint64_t b = lba; b < lba + 8; b++) {
        std::optional<uint64_t> want;
        if (b % 2 == 0) want = b / 2;
        if (auto it = top.find(b); it != top.end()) want = it->second;
        auto got = seen.find(b);
        if (want.has_value() != (got != seen.end()) || (want && *want != got->second)) mismatches++;
      }
      s = set.index_cache_stats_locked();
      // Loads count up between the shrinks that start a load: at most one
      // read's chunks past the budget.
      REQUIRE(s.resident_extents <= kBudgetExtents + 2 * 2 * kIndexChunkBlocks);
    }
    CHECK(mismatches == 0);
    s = set.index_cache_stats_locked();
    MESSAGE("index cache after ", kReads, " reads: ", s.chunk_loads, " chunk loads, ", s.rows_loaded, " rows read, ",
            s.chunks_loaded, " chunks in memory, ", s.chunks_dropped, " dropped, ", s.resident_extents, " extents");
    CHECK(s.rows_loaded < kBaseExtents / 2);  // not loaded whole
    CHECK(s.chunks_dropped > 0);              // the budget was reached and held
    CHECK(s.resident_layers == 0);

    // Made resident (what GC does before changing a layer's rows): every
    // extent, and no longer counted against the cache.
    REQUIRE(set.make_resident_locked(*set.find_locked(2)).ok());
    CHECK(set.find_locked(2)->map.size() == kTopExtents);
    CHECK(!set.find_locked(2)->paged());
    CHECK(set.find_locked(2)->data_bytes == kTopExtents * kBlockSize);
    set.page_out_locked(*set.find_locked(2));
    CHECK(set.find_locked(2)->paged());
    CHECK(set.find_locked(2)->map.size() == 0);
  }

  TEST_CASE("a change of the rows reaches the chunks loaded, and the others read it from the index") {
    TempDir dir;
    auto index = meta::Index::Open(dir.path + "/index.sqlite");
    REQUIRE(index.ok());
    REQUIRE((*index)->live_layer().ok());
    std::vector<meta::MappedExtent> rows;
    for (uint64_t i = 0; i < 4 * kIndexChunkBlocks; i++) rows.push_back(row(i, i));
    REQUIRE((*index)->replace_layer(1, 0, rows, {}).ok());
    auto layers = (*index)->list_layers();
    REQUIRE(layers.ok());
    LayerSet set;
    MutexLock lock(&set.mu());
    REQUIRE(set.set_index_locked(index->get(), 0).ok());
    REQUIRE(set.load_locked(*layers, 1, [](Layer&) { return Status::OK(); }).ok());
    const std::shared_ptr<Layer> live = set.live_locked();
    auto read = [&](uint64_t lba) {
      uint64_t tag = UINT64_MAX;
      REQUIRE(live->visit(lba, 1, [&](uint64_t, uint64_t, const BlockSource& src) { tag = src.frame.offset; }).ok());
      return tag;
    };
    CHECK(read(10) == 10);  // chunk 0 loaded, the rest not
    CHECK(live->loaded.size() == 1);

    // A change spanning chunks 0-2, made as a commit makes it: the index
    // first, then the map (which only its loaded chunk takes).
    std::vector<meta::MappedExtent> changed = rows;
    const uint64_t from = kIndexChunkBlocks - 3, n = kIndexChunkBlocks + 6;
    for (uint64_t b = from; b < from + n; b++) changed[b].frame.offset = 100000 + b;
    REQUIRE((*index)->replace_layer(1, 0, changed, {}).ok());
    for (uint64_t b = from; b < from + n; b++) live->assign(b, 1, source_of(changed[b]));
    CHECK(live->loaded.size() == 1);  // assign loads nothing
    for (uint64_t b : {from - 1, from, kIndexChunkBlocks - 1, kIndexChunkBlocks, from + n - 1, from + n}) {
      const bool in = b >= from && b < from + n;
      CHECK(read(b) == (in ? 100000 + b : b));
    }
  }
}

TEST_SUITE("engine.index_cache") {
  TEST_CASE("the flattened base is paged too: folded into rows on disk, read back by chunks") {
    TempDir dir;
    auto index = meta::Index::Open(dir.path + "/index.sqlite");
    REQUIRE(index.ok());
    REQUIRE((*index)->live_layer().ok());
    // Layers 1..20 in one chain (20 live): layer k maps every block whose
    // lba % 20 == k - 1 among the first 20 * kPerLayer, and overwrites every
    // 7th block of layer k - 1's.
    constexpr uint64_t kLayers = 20, kPerLayer = 20'000;
    uint64_t rows_below_live = 0;
    for (uint64_t k = 1; k <= kLayers; k++) {
      if (k > 1)
        REQUIRE((*index)->create_snapshot({"s" + std::to_string(k - 1), k - 1, "snapshot", "u", 1}, k, 1).ok());
      std::map<uint64_t, meta::MappedExtent> rows;
      for (uint64_t i = 0; i < kPerLayer; i++) rows[i * kLayers + k - 1] = row(i * kLayers + k - 1, k * 1'000'000 + i);
      if (k > 1) {
        for (uint64_t i = 0; i < kPerLayer; i += 7)
          rows[i * kLayers + k - 2] = row(i * kLayers + k - 2, k * 1'000'000 + 500'000 + i);
      }
      std::vector<meta::MappedExtent> list;
      for (const auto& [lba, x] : rows) list.push_back(x);
      REQUIRE((*index)->replace_layer(k, k - 1, list, {}).ok());
      if (k < kLayers) rows_below_live += list.size();
    }
    auto layers = (*index)->list_layers();
    REQUIRE(layers.ok());
    LayerSet set;
    constexpr uint64_t kBudgetExtents = 10'000;
    {
      MutexLock lock(&set.mu());
      REQUIRE(set.set_index_locked(index->get(), kBudgetExtents * kResidentExtentBytes).ok());
      REQUIRE(set.load_locked(*layers, kLayers, [](Layer&) { return Status::OK(); }).ok());
    }
    int steps = 0;
    while (set.flatten_step(4096, [](const Layer&) { return false; })) REQUIRE(++steps < 10'000);

    MutexLock lock(&set.mu());
    const FlatBaseStats flat = set.flat_stats_locked();
    CHECK(flat.top_layer == kLayers - 1);
    CHECK(flat.folds == kLayers - 1);
    CHECK(flat.extents >= rows_below_live);  // rows written into the base's file, batch by batch
    IndexCacheStats s = set.index_cache_stats_locked();
    CHECK(s.resident_extents == 0);  // folding loaded nothing into memory
    std::mt19937_64 rng(3);
    uint64_t mismatches = 0;
    size_t maps_most = 0;
    for (int r = 0; r < 2000; r++) {
      const uint64_t lba = rng() % (kLayers * kPerLayer - 16);
      ExtentMap<BlockSource> through, walk;
      std::vector<const Layer*> above;
      const Layer* base = set.read_path_locked(nullptr, &above);
      REQUIRE(base != nullptr);
      REQUIRE(base->visit(lba, 16, [&](uint64_t st, uint64_t n, const BlockSource& src) { through.assign(st, n, src); })
                  .ok());
      REQUIRE(LayerSet::overlay_chain(above, lba, 16, &through).ok());
      maps_most = std::max(maps_most, above.size() + 1);
      REQUIRE(LayerSet::overlay_chain(set.chain_locked(nullptr), lba, 16, &walk).ok());
      for (uint64_t b = lba; b < lba + 16; b++) {
        uint64_t t = UINT64_MAX, w = UINT64_MAX;
        through.visit(b, 1, [&](uint64_t, uint64_t, const BlockSource& src) { t = src.frame.offset; });
        walk.visit(b, 1, [&](uint64_t, uint64_t, const BlockSource& src) { w = src.frame.offset; });
        if (t != w || t == UINT64_MAX) mismatches++;
      }
      s = set.index_cache_stats_locked();
      REQUIRE(s.resident_extents <= kBudgetExtents + 4 * 2 * kIndexChunkBlocks);
    }
    CHECK(mismatches == 0);
    CHECK(maps_most == 2);  // the base and the live layer, with 19 snapshots behind
    s = set.index_cache_stats_locked();
    MESSAGE("paged base: ", flat.extents, " rows folded, ", s.chunk_loads, " chunk loads, ", s.chunks_dropped,
            " dropped, ", s.resident_extents, " extents in memory");
    CHECK(s.chunks_dropped > 0);
  }
}
