// Volume::read_if_cached (BlockDevice::read_if_cached): a read served without
// waiting — from the write buffer, the memory frame cache, or (file://) the
// kernel's cached pages of a segment — gives exactly what read_described()
// gives; a read that would have to fetch is declined and changes nothing.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "src/engine/volume.h"
#include "src/store/fault_store.h"
#include "src/store/file_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

VolumeOptions options(const std::string& dir) {
  VolumeOptions o;
  o.size_bytes = 16ull << 20;
  o.segment_bytes = 1ull << 20;
  o.flush_interval_ms = 0;
  o.codec = Codec::kLz4;
  o.index_path = dir + "/index.sqlite";
  // No read-ahead: a frame it is fetching is (rightly) declined, which would
  // make these checks depend on its timing.
  o.read_ahead_bytes = 0;
  return o;
}

std::vector<std::byte> pattern(uint64_t bytes, uint8_t salt) {
  std::vector<std::byte> data(bytes);
  for (uint64_t i = 0; i < bytes; ++i) {
    data[i] = std::byte(static_cast<uint8_t>((i % 4096) < 1024 ? salt : (i * 2654435761u >> 13) + salt));
  }
  return data;
}

// read_if_cached() of [off, off+len), first, against read_described() of the same.
void check_same(BlockDevice& v, uint64_t off, uint64_t len) {
  CAPTURE(off);
  CAPTURE(len);
  std::vector<std::byte> want(len), got(len);
  std::vector<StatusExtent> want_ext, got_ext;
  REQUIRE(v.read_if_cached(off, got, &got_ext));
  REQUIRE(v.read_described(off, want, &want_ext).ok());
  CHECK(got == want);
  REQUIRE(got_ext.size() == want_ext.size());
  for (size_t i = 0; i < got_ext.size(); ++i) {
    CHECK(got_ext[i].length == want_ext[i].length);
    CHECK(got_ext[i].state == want_ext[i].state);
  }
}

}  // namespace

TEST_SUITE("engine.cached_read") {
  TEST_CASE("file://: a fresh volume reads flushed frames from the cached pages of their segments") {
    testing::TempDir dir;
    auto file = FileStore::Open(dir.path + "/data");
    REQUIRE(file.ok());
    const auto data = pattern(4ull << 20, 3);
    {
      auto v = Volume::Open(*file, options(dir.path));
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, data, false).ok());
      REQUIRE((*v)->write_zeroes(5ull << 20, 1ull << 20, false).ok());
      REQUIRE((*v)->close().ok());
    }
    // A new Volume: an empty frame cache. The segments were just written, so
    // their pages are cached.
    auto v = Volume::Open(*file, options(dir.path));
    REQUIRE(v.ok());
    for (uint64_t off : {uint64_t{0}, uint64_t{4096}, uint64_t{(1 << 20) - 4096}, uint64_t{3 << 20},
                         uint64_t{(4ull << 20) - 8192}, uint64_t{5ull << 20}, uint64_t{12ull << 20}}) {
      check_same(**v, off, 4096);
      check_same(**v, off, 8192);
    }
    std::vector<std::byte> got(64 << 10);
    REQUIRE((*v)->read_if_cached(100 << 10, got, nullptr));
    CHECK(std::memcmp(got.data(), data.data() + (100 << 10), got.size()) == 0);
    const VolumeStats s = (*v)->stats();
    CHECK(s.fetch.cached_reads > 0);
    CHECK(s.fetch.gets == 0);  // no hand-off to the fetcher at all
    // Out of range: declined, never an answer.
    CHECK_FALSE((*v)->read_if_cached(16ull << 20, got, nullptr));
  }

  TEST_CASE("a store without cached pages: a frame not in memory is declined, then served once read") {
    testing::TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    // FaultStore hands out no shared objects: reads are ranged GETs, as on S3.
    auto store = std::make_shared<FaultStore>(mem);
    const auto data = pattern(2ull << 20, 9);
    {
      auto v = Volume::Open(store, options(dir.path));
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, data, false).ok());
      REQUIRE((*v)->close().ok());
    }
    auto v = Volume::Open(store, options(dir.path));
    REQUIRE(v.ok());
    std::vector<std::byte> got(4096);
    const uint64_t gets_before = store->calls(FaultStore::kGetRange);
    const VolumeStats before = (*v)->stats();
    CHECK_FALSE((*v)->read_if_cached(8192, got, nullptr));
    CHECK(store->calls(FaultStore::kGetRange) == gets_before);  // declining fetched nothing
    REQUIRE((*v)->read(8192, got).ok());
    // The frame cache counts the read once: the declined offer counted nothing.
    CHECK((*v)->stats().cache_misses == before.cache_misses + 1);
    CHECK((*v)->stats().cache_hits == before.cache_hits);
    REQUIRE((*v)->read_if_cached(8192, got, nullptr));
    CHECK((*v)->stats().cache_hits == before.cache_hits + 1);
    check_same(**v, 8192, 4096);  // the frame is in the memory cache now
    // Writes not yet uploaded are in memory too; a hole needs nothing.
    const auto fresh = pattern(8192, 77);
    REQUIRE((*v)->write(1ull << 20, fresh, false).ok());
    check_same(**v, 1ull << 20, 8192);
    check_same(**v, 10ull << 20, 4096);
    // A snapshot's view the same way. Its cut uploaded the write: not in memory until read.
    REQUIRE((*v)->create_snapshot("s").ok());
    auto snap = (*v)->open_snapshot("s");
    REQUIRE(snap.ok());
    std::vector<std::byte> from_snap(8192);
    CHECK_FALSE((*snap)->read_if_cached(1ull << 20, from_snap, nullptr));
    REQUIRE((*snap)->read(1ull << 20, from_snap).ok());
    CHECK(from_snap == fresh);
    check_same(**snap, 1ull << 20, 8192);
  }

  TEST_CASE("s3-like store with a disk cache: a restart reads cached frames from the disk cache's cached pages") {
    testing::TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    auto store = std::make_shared<FaultStore>(mem);
    VolumeOptions o = options(dir.path);
    o.disk_cache_bytes = 16ull << 20;
    o.disk_cache_dir = dir.path + "/cache";
    const auto data = pattern(2ull << 20, 5);
    {
      auto v = Volume::Open(store, o);
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, data, false).ok());
      REQUIRE((*v)->close().ok());  // the upload writes its frames through to the disk cache
    }
    auto v = Volume::Open(store, o);
    REQUIRE(v.ok());
    const uint64_t gets_before = store->calls(FaultStore::kGetRange);
    for (uint64_t off : {uint64_t{0}, uint64_t{300 << 10}, uint64_t{(2 << 20) - 4096}}) check_same(**v, off, 4096);
    CHECK(store->calls(FaultStore::kGetRange) == gets_before);
    const VolumeStats s = (*v)->stats();
    CHECK(s.fetch.disk_hits >= 3);
    CHECK(s.fetch.gets == 0);
  }
}
