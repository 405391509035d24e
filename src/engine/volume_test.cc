#include "src/engine/volume.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>

#include "src/store/fault_store.h"
#include "src/store/file_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
namespace fs = std::filesystem;

namespace {

using portalbd::testing::TempDir;

VolumeOptions small_options(const std::string& dir, uint64_t size = 8ull << 20) {
  VolumeOptions o;
  o.size_bytes = size;
  o.segment_bytes = 256 << 10;  // many small segments
  o.write_buffer_bytes = 1 << 20;
  o.flush_interval_ms = 0;
  o.cache_bytes = 128 << 10;
  o.index_path = dir + "/index.sqlite";
  return o;
}

std::vector<std::byte> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<std::byte> v(n);
  for (auto& b : v) b = std::byte(static_cast<uint8_t>(rng() % 7 == 0 ? 0 : rng()));
  return v;
}

// The model: a flat byte array the device must always equal.
void check_equal(Volume& v, const std::vector<std::byte>& model, uint64_t off, uint64_t len) {
  std::vector<std::byte> got(len);
  REQUIRE(v.read(off, got).ok());
  REQUIRE(std::memcmp(got.data(), model.data() + off, len) == 0);
  // read_described(): the same bytes, and the extents block_status() gives,
  // from one lookup. Zero and hole extents must read as zeros.
  std::vector<std::byte> again(len, std::byte{0xEE});
  std::vector<StatusExtent> described, status;
  REQUIRE(v.read_described(off, again, &described).ok());
  REQUIRE(std::memcmp(again.data(), model.data() + off, len) == 0);
  REQUIRE(v.block_status(off, len, SIZE_MAX, &status).ok());
  REQUIRE(described.size() == status.size());
  uint64_t at = 0;
  for (size_t i = 0; i < described.size(); ++i) {
    REQUIRE(described[i].length == status[i].length);
    REQUIRE(described[i].state == status[i].state);
    if (described[i].state != ExtentState::kData) {
      auto first = again.begin() + static_cast<ptrdiff_t>(at);
      REQUIRE(std::all_of(first, first + static_cast<ptrdiff_t>(described[i].length),
                          [](std::byte b) { return b == std::byte{0}; }));
    }
    at += described[i].length;
  }
  REQUIRE(at == len);
}

// Random writes, zeroes, trims, flushes and reads, checked after every read.
void random_workload(Volume& v, std::vector<std::byte>& model, std::mt19937_64& rng, int ops) {
  const uint64_t size = model.size();
  for (int i = 0; i < ops; ++i) {
    uint64_t off = rng() % size;
    if (rng() % 2) off -= off % kBlockSize;  // half aligned
    uint64_t len = 1 + rng() % std::min<uint64_t>(size - off, 3 * 65536);
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2: {
        auto data = random_bytes(rng, len);
        REQUIRE(v.write(off, data, rng() % 16 == 0).ok());
        std::memcpy(model.data() + off, data.data(), len);
        break;
      }
      case 3:
        REQUIRE(v.write_zeroes(off, len, false).ok());
        std::memset(model.data() + off, 0, len);
        break;
      case 4:
        REQUIRE(v.trim(off, len, false).ok());
        std::memset(model.data() + off, 0, len);
        break;
      case 5: REQUIRE(v.flush().ok()); break;
      default: check_equal(v, model, off, len);
    }
  }
}

}  // namespace

TEST_SUITE("engine.volume") {
  TEST_CASE("random operations match a flat model, across flushes and reopen") {
    TempDir dir;
    auto store = FileStore::Open(dir.path + "/data");
    REQUIRE(store.ok());
    std::mt19937_64 rng(7);
    std::vector<std::byte> model(8 << 20);
    {
      auto v = Volume::Open(*store, small_options(dir.path));
      REQUIRE(v.ok());
      random_workload(**v, model, rng, 600);
      REQUIRE((*v)->close().ok());
      CHECK((*v)->stats().segments_written > 3);
    }
    {
      auto v = Volume::Open(*store, small_options(dir.path));
      REQUIRE(v.ok());
      check_equal(**v, model, 0, model.size());
      random_workload(**v, model, rng, 300);
      REQUIRE((*v)->close().ok());
    }
    SUBCASE("the index rebuilds from the segments alone") {
      fs::remove(dir.path + "/index.sqlite");
      fs::remove(dir.path + "/index.sqlite-wal");
      fs::remove(dir.path + "/index.sqlite-shm");
      auto v = Volume::Open(*store, small_options(dir.path));
      REQUIRE(v.ok());
      CHECK((*v)->stats().replayed_segments > 3);
      check_equal(**v, model, 0, model.size());
    }
  }

  TEST_CASE("flush makes data durable: a volume dropped without close keeps flushed writes") {
    TempDir dir;
    auto store = FileStore::Open(dir.path + "/data");
    REQUIRE(store.ok());
    std::vector<std::byte> a(8192, std::byte{0xAA}), b(4096, std::byte{0xBB});
    {
      auto v = Volume::Open(*store, small_options(dir.path));
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, a, false).ok());
      REQUIRE((*v)->flush().ok());
      REQUIRE((*v)->write(4096, b, false).ok());  // not flushed: may be lost
      // Destroyed without close(): like a crash after the flush.
    }
    auto v = Volume::Open(*store, small_options(dir.path));
    REQUIRE(v.ok());
    std::vector<std::byte> got(4096);
    REQUIRE((*v)->read(0, got).ok());
    CHECK(got == std::vector<std::byte>(4096, std::byte{0xAA}));
  }

  TEST_CASE("bounds: past the end is refused, the last block works on a 1 EiB volume") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto v = Volume::Open(store, small_options(dir.path, 1ull << 60));
    REQUIRE(v.ok());
    const uint64_t size = (*v)->size_bytes();
    std::vector<std::byte> block(4096, std::byte{0x5A}), got(4096);
    REQUIRE((*v)->write(size - 4096, block, true).ok());
    REQUIRE((*v)->read(size - 4096, got).ok());
    CHECK(got == block);
    CHECK((*v)->write(size - 4095, block, false).is(Status::Code::kNoSpace));
    CHECK((*v)->read(size, got).is(Status::Code::kOutOfRange));
    CHECK((*v)->trim(size - 4096, 8192, false).is(Status::Code::kNoSpace));
    REQUIRE((*v)->trim(0, size, false).ok());  // trimming 1 EiB stores nothing
    REQUIRE((*v)->read(size - 4096, got).ok());
    CHECK(got == std::vector<std::byte>(4096));
  }

  TEST_CASE("size changes: same size opens, shrink refused, grow needs the flag") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto opts = small_options(dir.path, 8 << 20);
    { REQUIRE(Volume::Open(store, opts).ok()); }
    opts.size_bytes = 4 << 20;
    auto shrunk = Volume::Open(store, opts);
    REQUIRE_FALSE(shrunk.ok());
    CHECK(shrunk.status().message().find("shrink") != std::string::npos);
    opts.size_bytes = 16 << 20;
    auto grown = Volume::Open(store, opts);
    REQUIRE_FALSE(grown.ok());
    CHECK(grown.status().message().find("--grow") != std::string::npos);
    opts.grow = true;
    auto ok = Volume::Open(store, opts);
    REQUIRE(ok.ok());
    CHECK((*ok)->size_bytes() == (16u << 20));
    opts.size_bytes = 0;  // unset: keep what the volume has
    opts.grow = false;
    (*ok).reset();
    auto kept = Volume::Open(store, opts);
    REQUIRE(kept.ok());
    CHECK((*kept)->size_bytes() == (16u << 20));
  }

  TEST_CASE("a corrupted segment reads as an error, never as data") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto opts = small_options(dir.path);
    opts.cache_bytes = 0;
    auto v = Volume::Open(store, opts);
    REQUIRE(v.ok());
    std::vector<std::byte> data(65536, std::byte{0x11});
    REQUIRE((*v)->write(0, data, true).ok());
    std::vector<std::byte> obj;
    REQUIRE(store->get(segment_key(1), &obj).ok());
    obj[10] ^= std::byte{0xFF};
    REQUIRE(store->put(segment_key(1), obj).ok());
    std::vector<std::byte> got(4096);
    CHECK((*v)->read(0, got).is(Status::Code::kCorruption));
  }

  TEST_CASE("a cold sequential read fetches frames stored back to back in one ranged GET") {
    TempDir dir;
    auto store = std::make_shared<FaultStore>(std::make_shared<MemoryStore>());
    auto opts = small_options(dir.path);
    opts.segment_bytes = 4 << 20;  // the whole write in one segment
    opts.write_buffer_bytes = 8 << 20;
    opts.cache_bytes = 0;  // every read goes to the store
    auto v = Volume::Open(store, opts);
    REQUIRE(v.ok());
    std::mt19937_64 rng(7);
    auto data = random_bytes(rng, 1 << 20);  // 16 frames of 64 KiB
    REQUIRE((*v)->write(0, data, true).ok());

    const uint64_t before = store->calls(FaultStore::kGetRange);
    std::vector<std::byte> got(1 << 20);
    REQUIRE((*v)->read(0, got).ok());
    CHECK(got == data);
    CHECK(store->calls(FaultStore::kGetRange) - before == 1);

    // Unaligned, inside the run: still one GET, right bytes.
    const uint64_t mid = store->calls(FaultStore::kGetRange);
    std::vector<std::byte> part(300000);
    REQUIRE((*v)->read(70000, part).ok());
    CHECK(std::memcmp(part.data(), data.data() + 70000, part.size()) == 0);
    CHECK(store->calls(FaultStore::kGetRange) - mid == 1);

    // A failed GET is an error, not zeroes.
    store->fail_call(1, Status::IOError("injected"));
    CHECK((*v)->read(0, got).is(Status::Code::kIOError));
  }

  TEST_CASE("block status tells data, zero and hole apart") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto v = Volume::Open(store, small_options(dir.path));
    REQUIRE(v.ok());
    std::vector<std::byte> data(8192, std::byte{1});
    REQUIRE((*v)->write(4096, data, false).ok());
    REQUIRE((*v)->write_zeroes(16384, 8192, false).ok());
    std::vector<StatusExtent> ext;
    REQUIRE((*v)->block_status(0, 32768, 100, &ext).ok());
    REQUIRE(ext.size() == 5);
    CHECK((ext[0].length == 4096 && ext[0].state == ExtentState::kHole));
    CHECK((ext[1].length == 8192 && ext[1].state == ExtentState::kData));
    CHECK((ext[2].length == 4096 && ext[2].state == ExtentState::kHole));
    CHECK((ext[3].length == 8192 && ext[3].state == ExtentState::kZero));
    CHECK((ext[4].length == 8192 && ext[4].state == ExtentState::kHole));
    REQUIRE((*v)->flush().ok());  // same answer once it comes from the index
    std::vector<StatusExtent> after;
    REQUIRE((*v)->block_status(0, 32768, 100, &after).ok());
    CHECK(after.size() == ext.size());
  }

  TEST_CASE("a torn segment at the end of the log is dropped; one further back is refused") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto opts = small_options(dir.path);
    std::vector<std::byte> a(8192, std::byte{0xA1}), b(8192, std::byte{0xB2});
    {
      auto v = Volume::Open(store, opts);
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, a, true).ok());  // segment 1
      REQUIRE((*v)->write(0, b, true).ok());  // segment 2
    }
    // A kill -9 mid-PUT on a store without atomic PUTs leaves half of segment 2.
    std::vector<std::byte> seg2;
    REQUIRE(store->get(segment_key(2), &seg2).ok());
    seg2.resize(seg2.size() / 2);
    REQUIRE(store->put(segment_key(2), seg2).ok());
    for (auto suffix : {"", "-wal", "-shm"}) fs::remove(dir.path + "/index.sqlite" + suffix);
    {
      auto v = Volume::Open(store, opts);
      REQUIRE(v.ok());
      std::vector<std::byte> got(8192);
      REQUIRE((*v)->read(0, got).ok());
      CHECK(got == a);  // the state before the torn (never answered) flush
      CHECK(store->head(segment_key(2)).status().is(Status::Code::kNotFound));
      REQUIRE((*v)->write(8192, b, true).ok());  // the log goes on past it
      for (uint32_t i = 0; i < kMaxUploadWindow; ++i) REQUIRE((*v)->write(16384, b, true).ok());
    }
    // Damage further back than the upload window (kMaxUploadWindow) is
    // corruption, not a torn upload.
    std::vector<std::byte> seg1;
    REQUIRE(store->get(segment_key(1), &seg1).ok());
    seg1.resize(10);
    REQUIRE(store->put(segment_key(1), seg1).ok());
    for (auto suffix : {"", "-wal", "-shm"}) fs::remove(dir.path + "/index.sqlite" + suffix);
    auto broken = Volume::Open(store, opts);
    REQUIRE_FALSE(broken.ok());
    CHECK(broken.status().is(Status::Code::kCorruption));
  }
}
