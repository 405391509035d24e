#include "src/engine/disk_frame_cache.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "src/util/crc32c.h"
#include "src/util/fd.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

constexpr uint64_t kSlot = DiskFrameCache::kSlotBytes;

// A stored frame of `len` bytes whose contents depend on (seq, offset).
struct StoredFrame {
  FrameRef ref;
  std::vector<std::byte> bytes;
};
StoredFrame frame(uint64_t seq, uint64_t offset, uint32_t len = 4096) {
  StoredFrame f;
  f.bytes.resize(len);
  for (uint32_t i = 0; i < len; ++i) f.bytes[i] = std::byte(static_cast<uint8_t>(seq * 31 + offset / 7 + i));
  f.ref.offset = offset;
  f.ref.stored_len = len;
  f.ref.raw_len = 65536;
  f.ref.crc = crc32c(f.bytes);
  f.ref.codec = Codec::kLz4;
  return f;
}

std::unique_ptr<DiskFrameCache> open_cache(const std::string& dir, uint64_t slots, const std::string& id = "vol-a") {
  auto c = DiskFrameCache::Open({dir + "/cache", slots * kSlot, id});
  REQUIRE(c.ok());
  return std::move(*c);
}

bool has(DiskFrameCache& c, uint64_t seq, const StoredFrame& f) {
  std::vector<std::byte> out;
  if (!c.get(seq, f.ref, &out)) return false;
  CHECK(out == f.bytes);
  return true;
}

// A stored segment object of `n` frames of several sizes, laid end to end
// after a 100-byte header, as put_object() is given it.
struct StoredObject {
  std::shared_ptr<const std::vector<std::byte>> bytes;
  std::vector<FrameRef> refs;
  std::vector<StoredFrame> frames;  // each frame's ref and bytes, as get() returns them
};
StoredObject object_of(uint64_t seq, int n) {
  StoredObject o;
  auto bytes = std::make_shared<std::vector<std::byte>>(100, std::byte{0x5a});
  for (int i = 0; i < n; ++i) {
    StoredFrame f = frame(seq, bytes->size(), 1024 * static_cast<uint32_t>(1 + i % 7));
    bytes->insert(bytes->end(), f.bytes.begin(), f.bytes.end());
    o.refs.push_back(f.ref);
    o.frames.push_back(std::move(f));
  }
  o.bytes = std::move(bytes);
  return o;
}

DiskFrameCache::Options options_of(const std::string& dir, uint64_t slots) {
  return {dir + "/cache", slots * kSlot, "vol-a"};
}

// Overwrites byte `at` of the frames file, as a torn or failing disk would.
void corrupt(const std::string& dir, uint64_t at) {
  UniqueFd fd(::open((dir + "/cache/frames").c_str(), O_RDWR));
  REQUIRE(fd);
  std::byte b{0};
  REQUIRE(pread_all(fd.get(), std::span<std::byte>(&b, 1), at).ok());
  b ^= std::byte{0xff};
  REQUIRE(pwrite_all(fd.get(), std::span<const std::byte>(&b, 1), at).ok());
}

}  // namespace

TEST_SUITE("engine.disk_cache") {
  TEST_CASE("a frame put is got back, verified, and counted") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 8);
    const auto f = frame(1, 0);
    CHECK_FALSE(has(*c, 1, f));
    c->put(1, f.ref, f.bytes);
    CHECK(has(*c, 1, f));
    // The same offset in another segment, or another crc there, is another frame.
    CHECK_FALSE(has(*c, 2, f));
    auto other = f;
    other.ref.crc ^= 1;
    std::vector<std::byte> out;
    CHECK_FALSE(c->get(1, other.ref, &out));
    const auto s = c->stats();
    CHECK(s.hits == 1);
    CHECK(s.misses == 3);
    CHECK(s.frames == 1);
    CHECK(s.bytes == 4096);
    CHECK(s.capacity_bytes == 8 * kSlot);
  }

  TEST_CASE("bytes that do not match the frame's crc are never cached") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 8);
    auto f = frame(1, 0);
    f.bytes[10] ^= std::byte{1};
    c->put(1, f.ref, f.bytes);
    CHECK(c->stats().frames == 0);
  }

  TEST_CASE("bounded: the least recent frame is evicted, and a scan does not push out frames read twice") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 10);
    std::vector<StoredFrame> hot;
    for (uint64_t i = 0; i < 4; ++i) {
      hot.push_back(frame(1, i * kSlot));
      c->put(1, hot.back().ref, hot.back().bytes);
      CHECK(has(*c, 1, hot.back()));  // a second touch: protected
    }
    // A scan of 100 cold frames, each read once.
    for (uint64_t i = 0; i < 100; ++i) {
      const auto f = frame(2, i * kSlot);
      c->put(2, f.ref, f.bytes);
    }
    const auto s = c->stats();
    CHECK(s.frames == 10);
    CHECK(s.evictions == 94);
    for (const auto& f : hot) CHECK(has(*c, 1, f));
    // The newest of the scan are there, the oldest gone.
    CHECK(has(*c, 2, frame(2, 99 * kSlot)));
    CHECK_FALSE(has(*c, 2, frame(2, 0)));
  }

  TEST_CASE("a frame whose bytes went bad on disk is dropped, not served, and can be put again") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 4);
    const auto f = frame(3, 0);
    c->put(3, f.ref, f.bytes);
    corrupt(dir.path, 100);  // slot 0
    std::vector<std::byte> out;
    CHECK_FALSE(c->get(3, f.ref, &out));
    CHECK(c->stats().crc_drops == 1);
    CHECK(c->stats().frames == 0);
    CHECK_FALSE(c->get(3, f.ref, &out));
    CHECK(c->stats().crc_drops == 1);  // once
    c->put(3, f.ref, f.bytes);
    CHECK(has(*c, 3, f));
  }

  TEST_CASE("a restart reloads the frames; another volume's cache is emptied") {
    testing::TempDir dir;
    std::vector<StoredFrame> frames;
    {
      auto c = open_cache(dir.path, 16);
      for (uint64_t i = 0; i < 12; ++i) {
        frames.push_back(frame(5, i * kSlot, 1000 + static_cast<uint32_t>(i)));
        c->put(5, frames.back().ref, frames.back().bytes);
      }
    }
    {
      auto c = open_cache(dir.path, 16);
      CHECK(c->stats().frames == 12);
      for (const auto& f : frames) CHECK(has(*c, 5, f));
      CHECK(c->stats().misses == 0);
    }
    {
      auto c = open_cache(dir.path, 16, "vol-b");
      CHECK(c->stats().frames == 0);
      CHECK_FALSE(has(*c, 5, frames[0]));
    }
  }

  TEST_CASE("drop_segments frees the slots of deleted segments at once, also across a restart") {
    testing::TempDir dir;
    std::vector<StoredFrame> doomed, kept;
    {
      auto c = open_cache(dir.path, 8);
      for (uint64_t i = 0; i < 4; ++i) {
        doomed.push_back(frame(7, i * kSlot));
        c->put(7, doomed.back().ref, doomed.back().bytes);
        kept.push_back(frame(8, i * kSlot));
        c->put(8, kept.back().ref, kept.back().bytes);
      }
      REQUIRE(c->stats().frames == 8);
      for (const auto& f : kept) CHECK(has(*c, 8, f));  // read twice: protected
      CHECK(c->drop_segments({7, 99}) == 4);
      const DiskFrameCacheStats s = c->stats();
      CHECK(s.frames == 4);
      CHECK(s.dropped == 4);
      for (const auto& f : doomed) CHECK_FALSE(has(*c, 7, f));
      // Four new frames take the freed slots: nothing kept is evicted.
      for (uint64_t i = 0; i < 4; ++i) {
        auto f = frame(9, i * kSlot);
        c->put(9, f.ref, f.bytes);
      }
      CHECK(c->stats().evictions == 0);
      for (const auto& f : kept) CHECK(has(*c, 8, f));
    }
    auto c = open_cache(dir.path, 8);
    CHECK(c->stats().frames == 8);
    for (const auto& f : doomed) CHECK_FALSE(has(*c, 7, f));
    for (const auto& f : kept) CHECK(has(*c, 8, f));
  }

  TEST_CASE("drop_segments of a segment never cached drops nothing") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 4);
    auto f = frame(3, 0);
    c->put(3, f.ref, f.bytes);
    CHECK(c->drop_segments({}) == 0);
    CHECK(c->drop_segments({4}) == 0);
    CHECK(has(*c, 3, f));
  }

  TEST_CASE("a smaller cache after a restart keeps only what fits") {
    testing::TempDir dir;
    std::vector<StoredFrame> frames;
    {
      auto c = open_cache(dir.path, 16);
      for (uint64_t i = 0; i < 16; ++i) {
        frames.push_back(frame(6, i * kSlot));
        c->put(6, frames.back().ref, frames.back().bytes);
      }
    }
    auto c = open_cache(dir.path, 4);
    CHECK(c->stats().frames == 4);
    CHECK(c->stats().capacity_bytes == 4 * kSlot);
    const auto f = frame(7, 0);
    c->put(7, f.ref, f.bytes);
    CHECK(has(*c, 7, f));
    CHECK(c->stats().frames == 4);
  }

  TEST_CASE("after a crash a torn frame or a torn record is never served") {
    testing::TempDir dir;
    const auto a = frame(8, 0), b = frame(8, kSlot), d = frame(8, 2 * kSlot);
    {
      auto c = open_cache(dir.path, 8);
      c->put(8, a.ref, a.bytes);
      c->put(8, b.ref, b.bytes);
      c->put(8, d.ref, d.bytes);
    }
    // Slots are used from 0 up: a in 0, b in 1, d in 2.
    corrupt(dir.path, 1 * kSlot + 4095);  // b's frame half written
    {
      // d's record torn (its own crc fails): a free slot at reload.
      UniqueFd fd(::open((dir.path + "/cache/slots").c_str(), O_RDWR));
      REQUIRE(fd);
      const std::byte junk[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
      REQUIRE(pwrite_all(fd.get(), junk, 4096 + 2 * 32 + 4).ok());
    }
    auto c = open_cache(dir.path, 8);
    CHECK(c->stats().frames == 2);
    CHECK(has(*c, 8, a));
    CHECK_FALSE(has(*c, 8, b));
    CHECK(c->stats().crc_drops == 1);
    CHECK_FALSE(has(*c, 8, d));
  }

  TEST_CASE("a second process cannot open the same cache") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 4);
    auto again = DiskFrameCache::Open({dir.path + "/cache", 4 * kSlot, "vol-a"});
    CHECK_FALSE(again.ok());
  }

  TEST_CASE("concurrent puts and gets on a small cache serve only right bytes") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 8);
    std::vector<std::thread> threads;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::vector<std::byte> out;
        for (uint64_t i = 0; i < 400; ++i) {
          const auto f = frame(9, ((i * 7 + t) % 24) * kSlot, 2048);
          if (c->get(9, f.ref, &out)) {
            if (out != f.bytes) ++wrong;
          } else {
            c->put(9, f.ref, f.bytes);
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(wrong == 0);
    CHECK(c->stats().crc_drops == 0);
    CHECK(c->stats().frames <= 8);
  }

  TEST_CASE(
      "put_object: an uploaded segment's frames are readable at once, on disk after settle, kept across a restart") {
    testing::TempDir dir;
    const StoredObject a = object_of(11, 40), b = object_of(12, 40);
    {
      auto c = open_cache(dir.path, 128);
      c->put_object(11, a.bytes, a.refs);
      // Whether the writer has reached them or not, they are there.
      for (const auto& f : a.frames) CHECK(has(*c, 11, f));
      c->settle();
      DiskFrameCacheStats s = c->stats();
      CHECK(s.inserts == 40);
      CHECK(s.frames == 40);
      CHECK(s.hits == 40);
      CHECK(s.misses == 0);
      CHECK(s.skipped == 0);
      CHECK(s.pending_bytes == 0);
      // Destroyed with b perhaps still queued: the destructor writes it.
      c->put_object(12, b.bytes, b.refs);
    }
    auto c = open_cache(dir.path, 128);
    CHECK(c->stats().frames == 80);
    for (const auto& f : a.frames) CHECK(has(*c, 11, f));
    for (const auto& f : b.frames) CHECK(has(*c, 12, f));
  }

  TEST_CASE("put_object of a ranged read: the object holds the segment from `base` on") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 16);
    StoredObject o = object_of(14, 4);
    constexpr uint64_t kBase = 8ull << 20;  // the GET began 8 MiB into the segment
    for (auto& r : o.refs) r.offset += kBase;
    for (auto& f : o.frames) f.ref.offset += kBase;
    FrameRef before_base = o.refs[0];
    before_base.offset = 0;  // not in the object: never served from it
    c->put_object(14, o.bytes, o.refs, kBase);
    std::vector<std::byte> out;
    CHECK_FALSE(c->get(14, before_base, &out));
    for (const auto& f : o.frames) CHECK(has(*c, 14, f));
    c->settle();
    CHECK(c->stats().frames == 4);
    for (const auto& f : o.frames) CHECK(has(*c, 14, f));
  }

  TEST_CASE("put_object: a frame whose bytes do not match its ref is neither served nor kept") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 16);
    StoredObject o = object_of(13, 3);
    o.refs[1].crc ^= 1;
    o.frames[1].ref.crc ^= 1;
    c->put_object(13, o.bytes, o.refs);
    std::vector<std::byte> out;
    CHECK_FALSE(c->get(13, o.frames[1].ref, &out));
    c->settle();
    CHECK(c->stats().frames == 2);
    CHECK(has(*c, 13, o.frames[0]));
    CHECK(has(*c, 13, o.frames[2]));
  }

  TEST_CASE("drop_segments drops an uploaded segment whether it is queued, being written or written") {
    testing::TempDir dir;
    auto c = open_cache(dir.path, 256);
    std::vector<StoredObject> objects;
    for (uint64_t seq = 1; seq <= 4; ++seq) {
      objects.push_back(object_of(seq, 50));
      c->put_object(seq, objects.back().bytes, objects.back().refs);
    }
    c->drop_segments({2, 4});
    c->settle();
    const DiskFrameCacheStats s = c->stats();
    CHECK(s.frames == 100);
    for (uint64_t seq = 1; seq <= 4; ++seq) {
      for (const auto& f : objects[seq - 1].frames) CHECK(has(*c, seq, f) == (seq % 2 == 1));
    }
  }

  TEST_CASE("put_object beyond pending_bytes skips whole objects, counted; what is kept is right") {
    testing::TempDir dir;
    DiskFrameCache::Options o = options_of(dir.path, 1024);
    o.pending_bytes = 1;  // one object may wait, whatever its size; a second is skipped
    auto opened = DiskFrameCache::Open(o);
    REQUIRE(opened.ok());
    auto& c = *opened;
    std::vector<StoredObject> objects;
    for (uint64_t seq = 1; seq <= 20; ++seq) {
      objects.push_back(object_of(seq, 30));
      c->put_object(seq, objects.back().bytes, objects.back().refs);
    }
    c->settle();
    const DiskFrameCacheStats s = c->stats();
    MESSAGE("kept " << s.inserts << " frames, skipped " << s.skipped);
    CHECK(s.inserts + s.skipped == 20 * 30);
    CHECK(s.skipped % 30 == 0);
    CHECK(s.inserts >= 30);  // the first object always waits
    uint64_t kept = 0;
    for (uint64_t seq = 1; seq <= 20; ++seq) {
      int found = 0;
      for (const auto& f : objects[seq - 1].frames) found += has(*c, seq, f) ? 1 : 0;
      CHECK((found == 0 || found == 30));  // an object is kept whole or not at all
      kept += static_cast<uint64_t>(found);
    }
    CHECK(kept == s.inserts);
  }
}
