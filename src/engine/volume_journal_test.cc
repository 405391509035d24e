// The volume with a local journal (issue 20): FLUSH is one fdatasync, a
// crash replays what storage lacks (and only that), a journal of another
// writer is set aside, and storage alone is always a prefix of the writes.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "src/engine/volume.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace std::chrono_literals;

namespace {

VolumeOptions journaled(const std::string& dir, const std::string& index = "index.sqlite") {
  VolumeOptions o;
  o.size_bytes = 8ull << 20;
  o.segment_bytes = 4ull << 20;
  o.write_buffer_bytes = 16ull << 20;
  o.flush_interval_ms = 0;  // uploads only when asked (or the buffer fills)
  o.index_path = dir + "/" + index;
  o.journal_dir = dir + "/journal";
  o.journal_bytes = 8ull << 20;
  o.journal_chunk_bytes = 1ull << 20;
  return o;
}

std::vector<std::byte> block(uint8_t v) { return std::vector<std::byte>(4096, std::byte{v}); }

uint8_t first_byte(Volume& v, uint64_t offset) {
  std::vector<std::byte> got(4096);
  REQUIRE(v.read(offset, got).ok());
  return static_cast<uint8_t>(got[0]);
}

size_t segments_in(ObjectStore& store) {
  std::vector<ObjectInfo> objects;
  REQUIRE(store.list("segments/", &objects).ok());
  return objects.size();
}

}  // namespace

TEST_SUITE("engine.journal_volume") {
  TEST_CASE("FLUSH returns with nothing uploaded, and a crash replays the journal") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    {
      auto v = Volume::Open(store, journaled(dir.path));
      REQUIRE(v.ok());
      for (uint8_t i = 0; i < 10; ++i) REQUIRE((*v)->write(i * 4096ull, block(i + 1), false).ok());
      REQUIRE((*v)->trim(3 * 4096, 4096, false).ok());
      REQUIRE((*v)->flush().ok());
      CHECK(segments_in(*store) == 0);  // durable in the journal, not in storage
      CHECK((*v)->stats().journal);
      // No close(): the process dies here.
    }
    auto v = Volume::Open(store, journaled(dir.path));
    REQUIRE(v.ok());
    for (uint8_t i = 0; i < 10; ++i) CHECK(first_byte(**v, i * 4096ull) == (i == 3 ? 0 : i + 1));
    // And it goes on: new writes number after the replayed ones, a clean
    // close uploads everything, and storage alone then has it all.
    REQUIRE((*v)->write(20 * 4096, block(42), false).ok());
    REQUIRE((*v)->close().ok());
    VolumeOptions from_storage = journaled(dir.path, "fresh.sqlite");
    from_storage.journal_dir = "";
    auto s = Volume::Open(store, from_storage);
    REQUIRE(s.ok());
    CHECK_FALSE((*s)->flush_is_local());  // without a journal a FLUSH uploads
    CHECK(first_byte(**s, 9 * 4096) == 10);
    CHECK(first_byte(**s, 3 * 4096) == 0);
    CHECK(first_byte(**s, 20 * 4096) == 42);
  }

  TEST_CASE("a journal record past the volume's end is refused at open, not replayed") {
    // A volume never shrinks, so such a record was not written by this
    // volume's writers. Here volume.json is edited down under a journal
    // that holds a write at 12 MiB.
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    VolumeOptions big = journaled(dir.path);
    big.size_bytes = 16ull << 20;
    {
      auto v = Volume::Open(store, big);
      REQUIRE(v.ok());
      REQUIRE((*v)->write(12ull << 20, block(7), false).ok());
      REQUIRE((*v)->flush().ok());
      // No close(): the process dies here.
    }
    std::vector<std::byte> manifest;
    REQUIRE(store->get("volume.json", &manifest).ok());
    auto m = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(manifest.data()), manifest.size()));
    m["size_bytes"] = 8ull << 20;
    const std::string text = m.dump();
    REQUIRE(store->put("volume.json", std::span(reinterpret_cast<const std::byte*>(text.data()), text.size())).ok());
    VolumeOptions same = journaled(dir.path);
    same.size_bytes = 0;  // whatever volume.json says
    auto v = Volume::Open(store, same);
    REQUIRE_FALSE(v.ok());
    CHECK(v.status().is(Status::Code::kCorruption));
    CHECK(v.status().message().find("past the volume's end") != std::string::npos);
    CHECK(v.status().message().find(dir.path + "/journal") != std::string::npos);
    MESSAGE(v.status().ToString());
  }

  TEST_CASE("a large write goes to storage only: the FLUSH after it uploads, small ones stay in the journal") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    VolumeOptions o = journaled(dir.path);
    o.journal_direct_write_bytes = 256 * 1024;
    const std::vector<std::byte> large(256 * 1024, std::byte{0x5a});
    {
      auto v = Volume::Open(store, o);
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, block(1), false).ok());
      CHECK((*v)->flush_is_local());  // a FLUSH now is a journal sync
      REQUIRE((*v)->flush().ok());
      CHECK(segments_in(*store) == 0);  // a small write: durable in the journal
      REQUIRE((*v)->write(1 << 20, large, false).ok());
      CHECK_FALSE((*v)->flush_is_local());  // ... until the large one is uploaded
      REQUIRE((*v)->write(4096, block(2), false).ok());
      REQUIRE((*v)->flush().ok());
      CHECK(segments_in(*store) >= 1);  // the large one is durable in storage
      CHECK((*v)->flush_is_local());
      CHECK((*v)->stats().journal_direct_writes == 1);
      REQUIRE((*v)->write(8192, block(3), false).ok());
      REQUIRE((*v)->flush().ok());
      // kill -9
    }
    auto v = Volume::Open(store, o);
    REQUIRE(v.ok());
    CHECK(first_byte(**v, 0) == 1);
    CHECK(first_byte(**v, 4096) == 2);
    CHECK(first_byte(**v, 8192) == 3);  // replayed from the journal after the marker
    std::vector<std::byte> got(large.size());
    REQUIRE((*v)->read(1 << 20, got).ok());
    CHECK(got == large);
  }

  TEST_CASE("with direct writes off, a large write is journaled like any other") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    VolumeOptions o = journaled(dir.path);
    o.journal_direct_write_bytes = 0;
    auto v = Volume::Open(store, o);
    REQUIRE(v.ok());
    REQUIRE((*v)->write(1 << 20, std::vector<std::byte>(512 * 1024, std::byte{7}), false).ok());
    REQUIRE((*v)->flush().ok());
    CHECK(segments_in(*store) == 0);
    CHECK((*v)->stats().journal_direct_writes == 0);
    // One larger than a journal record can hold (1 MiB chunks here) still
    // goes to storage only, rather than fail.
    REQUIRE((*v)->write(2 << 20, std::vector<std::byte>(1 << 20, std::byte{8}), false).ok());
    REQUIRE((*v)->flush().ok());
    CHECK(segments_in(*store) >= 1);
    CHECK((*v)->stats().journal_direct_writes == 1);
  }

  TEST_CASE("turning the journal off uploads what an earlier run left in it, then removes it") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    {
      auto v = Volume::Open(store, journaled(dir.path));
      REQUIRE(v.ok());
      for (uint8_t i = 0; i < 6; ++i) REQUIRE((*v)->write(i * 4096ull, block(i + 1), false).ok());
      REQUIRE((*v)->flush().ok());
      CHECK(segments_in(*store) == 0);
      // kill -9 here; the next start has the journal turned off
    }
    VolumeOptions off = journaled(dir.path);
    off.journal_drain = true;
    {
      auto v = Volume::Open(store, off);
      REQUIRE(v.ok());
      CHECK_FALSE((*v)->stats().journal);  // FLUSH goes to storage from now on
      CHECK(segments_in(*store) >= 1);     // what the journal held is uploaded
      for (uint8_t i = 0; i < 6; ++i) CHECK(first_byte(**v, i * 4096ull) == i + 1);
      CHECK_FALSE(std::filesystem::exists(dir.path + "/journal/meta"));
      REQUIRE((*v)->write(7 * 4096, block(77), false).ok());
      REQUIRE((*v)->flush().ok());
    }
    // Storage alone has everything: the journal's writes and the later one.
    VolumeOptions from_storage = journaled(dir.path, "fresh.sqlite");
    from_storage.journal_dir = "";
    auto s = Volume::Open(store, from_storage);
    REQUIRE(s.ok());
    CHECK_FALSE((*s)->flush_is_local());  // without a journal a FLUSH uploads
    for (uint8_t i = 0; i < 6; ++i) CHECK(first_byte(**s, i * 4096ull) == i + 1);
    CHECK(first_byte(**s, 7 * 4096) == 77);
  }

  TEST_CASE("replay skips what storage already holds: a later write uploaded by the timer is not undone") {
    // The case that breaks a naive replay: block 0 is written (A) and
    // flushed to the journal, then written again (B) without a FLUSH; the
    // flusher's timer uploads B. After a crash the journal still holds A;
    // applying it would put A over B.
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    {
      VolumeOptions o = journaled(dir.path);
      o.flush_interval_ms = 20;
      auto v = Volume::Open(store, o);
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, block(0xA), false).ok());
      REQUIRE((*v)->flush().ok());
      REQUIRE((*v)->write(0, block(0xB), false).ok());
      for (int i = 0; i < 500 && (*v)->stats().dirty_bytes > 0; ++i) std::this_thread::sleep_for(10ms);
      REQUIRE((*v)->stats().dirty_bytes == 0);
      REQUIRE(segments_in(*store) >= 1);
    }
    auto v = Volume::Open(store, journaled(dir.path));
    REQUIRE(v.ok());
    CHECK(first_byte(**v, 0) == 0xB);
  }

  TEST_CASE("a journal is set aside when another daemon has stored segments since") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    {
      auto a = Volume::Open(store, journaled(dir.path));
      REQUIRE(a.ok());
      // More writes than B makes below, so their write sequence numbers
      // run past storage's and only the writer check can keep them out.
      for (uint64_t lba : {0, 2, 3}) REQUIRE((*a)->write(lba * 4096, block(1), false).ok());
      REQUIRE((*a)->flush().ok());  // in A's journal only
    }
    {
      // B takes the volume over on another host (no journal, its own index)
      // and acknowledges a write of its own.
      VolumeOptions o = journaled(dir.path, "b.sqlite");
      o.journal_dir = "";
      auto b = Volume::Open(store, o);
      REQUIRE(b.ok());
      REQUIRE((*b)->write(4096, block(2), false).ok());
      REQUIRE((*b)->close().ok());
    }
    // A comes back: its journal predates B's writes and must not be laid
    // over them.
    auto a = Volume::Open(store, journaled(dir.path));
    REQUIRE(a.ok());
    CHECK(first_byte(**a, 4096) == 2);
    for (uint64_t lba : {0, 2, 3}) CHECK(first_byte(**a, lba * 4096) == 0);
    CHECK((*a)->stats().journal_live_records == 0);
  }

  TEST_CASE("a journal whose own segments are newest is adopted, across two crashes") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    for (uint8_t round = 1; round <= 3; ++round) {
      auto v = Volume::Open(store, journaled(dir.path));
      REQUIRE(v.ok());
      for (uint8_t r = 1; r < round; ++r) CHECK(first_byte(**v, r * 4096ull) == r);
      REQUIRE((*v)->write(round * 4096ull, block(round), false).ok());
      REQUIRE((*v)->flush().ok());
      // Upload some of it, so the newest segment is this writer's.
      auto snap = (*v)->create_snapshot("s" + std::to_string(round));
      REQUIRE(snap.ok());
      REQUIRE((*v)->write(100 * 4096, block(round), false).ok());
      REQUIRE((*v)->flush().ok());
    }
    auto v = Volume::Open(store, journaled(dir.path));
    REQUIRE(v.ok());
    CHECK(first_byte(**v, 100 * 4096) == 3);
  }

  TEST_CASE("a snapshot on a journaled volume is in storage when it is answered") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    {
      auto v = Volume::Open(store, journaled(dir.path));
      REQUIRE(v.ok());
      REQUIRE((*v)->write(0, block(7), false).ok());
      REQUIRE((*v)->create_snapshot("snap").ok());
      REQUIRE((*v)->write(0, block(8), false).ok());
      REQUIRE((*v)->flush().ok());
    }
    // The local disk is lost: storage alone has the snapshot with its data.
    std::filesystem::remove_all(dir.path + "/journal");
    VolumeOptions o = journaled(dir.path, "fresh.sqlite");
    o.journal_dir = "";
    auto v = Volume::Open(store, o);
    REQUIRE(v.ok());
    auto snap = (*v)->open_snapshot("snap");
    REQUIRE(snap.ok());
    std::vector<std::byte> got(4096);
    REQUIRE((*snap)->read(0, got).ok());
    CHECK(static_cast<uint8_t>(got[0]) == 7);
    // The write after it was only in the lost journal: storage is a prefix.
    CHECK((first_byte(**v, 0) == 7 || first_byte(**v, 0) == 8));
  }
}
