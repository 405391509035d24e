// The disk cache behind a Volume (VolumeOptions::disk_cache_bytes; issue 21):
// fetched and uploaded frames are kept on disk, a restart reads them from there and not
// from storage, a bad cached frame is fetched again, and snapshot reads use
// it too. The store is a MemoryStore behind a FaultStore (which hands out no
// shared objects, so reads are ranged GETs as on S3) and a CountingStore.
#include <doctest/doctest.h>
#include <fcntl.h>

#include <cstring>
#include <vector>

#include "src/engine/volume.h"
#include "src/store/counting_store.h"
#include "src/store/fault_store.h"
#include "src/store/memory_store.h"
#include "src/util/fd.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

constexpr uint64_t kDataBytes = 8ull << 20;

struct Fixture {
  testing::TempDir dir;
  std::shared_ptr<MemoryStore> mem = std::make_shared<MemoryStore>();
  std::shared_ptr<CountingStore> counted;

  VolumeOptions options(uint64_t disk_bytes = 64ull << 20) const {
    VolumeOptions o;
    o.size_bytes = 32ull << 20;
    o.segment_bytes = 2ull << 20;
    o.flush_interval_ms = 0;
    o.codec = Codec::kLz4;
    o.index_path = dir.path + "/index.sqlite";
    o.disk_cache_bytes = disk_bytes;
    o.disk_cache_dir = dir.path + "/cache";
    return o;
  }
  // A new Volume (an empty memory cache) over the same storage and disk.
  std::shared_ptr<Volume> open(uint64_t disk_bytes = 64ull << 20) {
    counted = std::make_shared<CountingStore>(std::make_shared<FaultStore>(mem));
    auto v = Volume::Open(counted, options(disk_bytes));
    REQUIRE_MESSAGE(v.ok(), v.status().ToString());
    return *v;
  }
  uint64_t gets() const { return counted->counts(CountingStore::kVolume).get_range; }
};

std::vector<std::byte> pattern(uint64_t bytes, uint8_t salt) {
  std::vector<std::byte> data(bytes);
  for (uint64_t i = 0; i < bytes; ++i) {
    // Half of each 4 KiB compresses, half does not: frames of several sizes.
    data[i] = std::byte(static_cast<uint8_t>((i % 4096) < 2048 ? salt : (i * 2654435761u >> 13) + salt));
  }
  return data;
}

void read_all_and_check(Volume& v, const std::vector<std::byte>& want) {
  std::vector<std::byte> got(want.size());
  for (uint64_t off = 0; off < want.size(); off += 1 << 20) {
    REQUIRE(v.read(off, std::span<std::byte>(got.data() + off, 1 << 20)).ok());
  }
  CHECK(got == want);
}

}  // namespace

TEST_SUITE("engine.disk_cache") {
  TEST_CASE("a restart reads what the first read fetched from disk, not from storage") {
    Fixture f;
    const auto data = pattern(kDataBytes, 1);
    {
      auto v = f.open(0);  // written without the cache: the first read below fetches every frame
      REQUIRE(v->write(0, data, false).ok());
      REQUIRE(v->close().ok());
    }
    uint64_t cold = 0;
    {
      auto v = f.open();
      const uint64_t before = f.gets();
      read_all_and_check(*v, data);
      cold = f.gets() - before;
      CHECK(cold > 0);
      v->settle_disk_cache();  // fetched frames are written by the cache's own thread
      const VolumeStats s = v->stats();
      CHECK(s.disk_cache);
      CHECK(s.disk.frames == kDataBytes / (64 << 10));
      CHECK(s.disk.misses == kDataBytes / (64 << 10));
      CHECK(v->close().ok());
    }
    {
      auto v = f.open();
      const uint64_t before = f.gets();
      read_all_and_check(*v, data);
      MESSAGE("GETs for 8 MiB: cold " << cold << ", after a restart " << f.gets() - before);
      CHECK(f.gets() - before == 0);
      CHECK(v->stats().disk.hits == kDataBytes / (64 << 10));
      CHECK(v->close().ok());
    }
  }

  TEST_CASE("uploaded frames are kept too: reading back after a restart costs no GET") {
    Fixture f;
    const auto data = pattern(kDataBytes, 4);
    {
      auto v = f.open();
      REQUIRE(v->write(0, data, false).ok());
      REQUIRE(v->flush().ok());
      // Readable at once, before the cache's writer has them on disk: no GET.
      const uint64_t before = f.gets();
      read_all_and_check(*v, data);
      CHECK(f.gets() - before == 0);
      v->settle_disk_cache();
      CHECK(v->stats().disk.inserts == kDataBytes / (64 << 10));
      REQUIRE(v->close().ok());
    }
    auto v = f.open();
    const uint64_t before = f.gets();
    read_all_and_check(*v, data);
    CHECK(f.gets() - before == 0);
    CHECK(v->stats().disk.hits == kDataBytes / (64 << 10));
    CHECK(v->close().ok());
  }

  TEST_CASE("GC deleting an overwritten segment drops its frames from the disk cache") {
    Fixture f;
    const auto old_data = pattern(kDataBytes, 5), new_data = pattern(kDataBytes, 6);
    auto v = f.open();
    REQUIRE(v->write(0, old_data, false).ok());
    REQUIRE(v->flush().ok());
    const uint64_t frames = kDataBytes / (64 << 10);
    v->settle_disk_cache();
    REQUIRE(v->stats().disk.frames == frames);
    REQUIRE(v->write(0, new_data, false).ok());  // every old frame is dead now
    REQUIRE(v->flush().ok());
    v->settle_disk_cache();
    CHECK(v->stats().disk.frames == 2 * frames);
    GcOptions gc;
    gc.grace_ms = 0;
    auto first = v->gc(gc);  // dooms the old segments
    REQUIRE(first.ok());
    auto second = v->gc(gc);  // deletes them
    REQUIRE(second.ok());
    const uint64_t deleted = first->segments_deleted + second->segments_deleted;
    CHECK(deleted > 0);
    const uint64_t dropped = first->cached_frames_dropped + second->cached_frames_dropped;
    MESSAGE("segments deleted " << deleted << ", cached frames dropped " << dropped);
    CHECK(dropped == frames);
    const VolumeStats s = v->stats();
    CHECK(s.disk.frames == frames);
    CHECK(s.disk.dropped == frames);
    read_all_and_check(*v, new_data);
    CHECK(v->close().ok());
  }

  TEST_CASE("a cached frame gone bad on disk is fetched again, and the read is right") {
    Fixture f;
    const auto data = pattern(kDataBytes, 2);
    {
      auto v = f.open();
      REQUIRE(v->write(0, data, false).ok());
      REQUIRE(v->close().ok());
    }
    {
      auto v = f.open();
      read_all_and_check(*v, data);
      REQUIRE(v->close().ok());
    }
    {
      // Flip one byte in each of the first 4 slots.
      UniqueFd fd(::open((f.dir.path + "/cache/frames").c_str(), O_RDWR));
      REQUIRE(fd);
      for (uint64_t slot = 0; slot < 4; ++slot) {
        std::byte b{};
        const uint64_t at = slot * DiskFrameCache::kSlotBytes + 17;
        REQUIRE(pread_all(fd.get(), std::span<std::byte>(&b, 1), at).ok());
        b ^= std::byte{0x5a};
        REQUIRE(pwrite_all(fd.get(), std::span<const std::byte>(&b, 1), at).ok());
      }
    }
    auto v = f.open();
    const uint64_t before = f.gets();
    read_all_and_check(*v, data);
    v->settle_disk_cache();
    const VolumeStats s = v->stats();
    CHECK(s.disk.crc_drops == 4);
    CHECK(f.gets() - before >= 1);
    CHECK(f.gets() - before <= 4);
    CHECK(s.disk.frames == kDataBytes / (64 << 10));  // put back
    CHECK(v->close().ok());
  }

  TEST_CASE("bounded by disk_cache_bytes; a snapshot export reads through it") {
    Fixture f;
    const auto data = pattern(kDataBytes, 3);
    {
      auto v = f.open(0);  // written without the cache: the read below fetches every frame
      REQUIRE(v->write(0, data, false).ok());
      REQUIRE(v->create_snapshot("s1").ok());
      REQUIRE(v->close().ok());
    }
    auto v = f.open(2ull << 20);
    auto snap = v->open_snapshot("s1");
    REQUIRE(snap.ok());
    std::vector<std::byte> got(kDataBytes);
    REQUIRE((*snap)->read(0, got).ok());
    CHECK(got == data);
    v->settle_disk_cache();
    const VolumeStats s = v->stats();
    CHECK(s.disk.capacity_bytes == 2ull << 20);
    CHECK(s.disk.frames == 32);
    CHECK(s.disk.inserts == kDataBytes / (64 << 10));
    CHECK(s.disk.evictions == kDataBytes / (64 << 10) - 32);
    CHECK(v->close().ok());
  }
}
