// Reads of a Volume on a store reached by ranged GETs (issue 21): a
// sequential reader is read ahead of (fewer, larger GETs; the reader finds its
// frames fetched), a random reader is not, read-ahead can be turned off, and
// cold reads of many threads wait on their GETs side by side, not one after
// another. The store is a MemoryStore behind a FaultStore (no shared objects,
// so reads are ranged GETs as on S3) and a CountingStore.
#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "src/engine/volume.h"
#include "src/store/counting_store.h"
#include "src/store/fault_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

constexpr uint64_t kDataBytes = 16ull << 20;

struct Fixture {
  testing::TempDir dir;
  std::shared_ptr<MemoryStore> mem = std::make_shared<MemoryStore>();
  std::shared_ptr<FaultStore> faults;
  std::shared_ptr<CountingStore> counted;
  std::vector<std::byte> data;

  VolumeOptions options(uint64_t read_ahead) const {
    VolumeOptions o;
    o.size_bytes = 64ull << 20;
    o.segment_bytes = 4ull << 20;
    o.flush_interval_ms = 0;
    o.codec = Codec::kLz4;
    o.index_path = dir.path + "/index.sqlite";
    o.read_ahead_bytes = read_ahead;
    return o;
  }
  // A new Volume (an empty memory cache) over the same storage.
  std::shared_ptr<Volume> open(uint64_t read_ahead = 8ull << 20) {
    faults = std::make_shared<FaultStore>(mem);
    counted = std::make_shared<CountingStore>(faults);
    auto v = Volume::Open(counted, options(read_ahead));
    REQUIRE_MESSAGE(v.ok(), v.status().ToString());
    return *v;
  }
  // Writes kDataBytes of half-compressible data and closes: storage holds it all.
  void fill() {
    data.resize(kDataBytes);
    for (uint64_t i = 0; i < kDataBytes; ++i) {
      data[i] = std::byte(static_cast<uint8_t>((i % 4096) < 2048 ? 7 : (i * 2654435761u >> 13)));
    }
    auto v = open();
    REQUIRE(v->write(0, data, false).ok());
    REQUIRE(v->close().ok());
  }
  uint64_t gets() const { return counted->counts(CountingStore::kVolume).get_range; }
  void read_and_check(Volume& v, uint64_t offset, uint64_t length) {
    std::vector<std::byte> got(length);
    REQUIRE(v.read(offset, got).ok());
    CHECK(std::equal(got.begin(), got.end(), data.begin() + offset));
  }
};

}  // namespace

TEST_SUITE("engine.read_ahead") {
  TEST_CASE("a sequential reader is read ahead of: few large GETs, its frames already fetched") {
    Fixture f;
    f.fill();
    auto v = f.open();
    const uint64_t before = f.gets();
    for (uint64_t off = 0; off < kDataBytes; off += 128 << 10) f.read_and_check(*v, off, 128 << 10);
    const VolumeStats s = v->stats();
    const uint64_t gets = f.gets() - before;
    MESSAGE("16 MiB in 128 KiB reads: " << gets << " GETs, " << s.fetch.prefetched << " frames read ahead");
    CHECK(s.read_ahead_bytes == 8ull << 20);
    CHECK(s.fetch.prefetched > kDataBytes / (64 << 10) / 2);  // most frames came by read-ahead
    CHECK(gets < 64);                                         // 128 reads, one frame run each without read-ahead
    CHECK(v->close().ok());
  }

  TEST_CASE("random reads are not read ahead of") {
    Fixture f;
    f.fill();
    auto v = f.open();
    std::mt19937_64 rng(3);
    for (int i = 0; i < 300; ++i) f.read_and_check(*v, (rng() % (kDataBytes / 4096)) * 4096, 4096);
    CHECK(v->stats().fetch.prefetched == 0);
    CHECK(v->close().ok());
  }

  TEST_CASE("read_ahead_bytes 0 turns read-ahead off") {
    Fixture f;
    f.fill();
    auto v = f.open(0);
    for (uint64_t off = 0; off < kDataBytes; off += 128 << 10) f.read_and_check(*v, off, 128 << 10);
    const VolumeStats s = v->stats();
    CHECK(s.read_ahead_bytes == 0);
    CHECK(s.fetch.prefetched == 0);
    CHECK(v->close().ok());
  }

  TEST_CASE("a snapshot's sequential reader is read ahead of too, as its own stream") {
    Fixture f;
    f.fill();
    auto v = f.open();
    REQUIRE(v->create_snapshot("s1").ok());
    auto snap = v->open_snapshot("s1");
    REQUIRE(snap.ok());
    for (uint64_t off = 0; off < kDataBytes; off += 128 << 10) {
      std::vector<std::byte> got(128 << 10);
      REQUIRE((*snap)->read(off, got).ok());
      CHECK(std::equal(got.begin(), got.end(), f.data.begin() + off));
    }
    CHECK(v->stats().fetch.prefetched > 0);
    snap->reset();
    CHECK(v->close().ok());
  }

  TEST_CASE("cold reads of many threads wait on their GETs side by side") {
    Fixture f;
    f.fill();
    auto v = f.open(0);
    f.faults->hang(1u << FaultStore::kGetRange);
    std::vector<std::thread> readers;
    for (uint64_t i = 0; i < 8; ++i) {
      readers.emplace_back([&, i] { f.read_and_check(*v, i * (2 << 20), 4096); });  // 8 frames far apart
    }
    bool all_in_flight = false;
    for (int i = 0; i < 1000 && !all_in_flight; ++i) {
      all_in_flight = f.faults->hanging() == 8;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(all_in_flight);
    f.faults->release();
    for (auto& t : readers) t.join();
    CHECK(v->close().ok());
  }
}
