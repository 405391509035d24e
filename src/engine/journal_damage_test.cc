// Journal recovery from damage: torn tails, damaged records and meta,
// headers that check but cannot be, and failing disks (kCorruption naming
// file and offset, never a skipped record).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "src/engine/journal.h"
#include "src/util/crc32c.h"
#include "tests/unit/journal_helpers.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace portalbd::testing::journal;
using portalbd::testing::TempDir;

TEST_SUITE("engine.journal") {
  TEST_CASE("a torn tail is cut at the last whole record, and the journal goes on from there") {
    TempDir tmp;
    auto o = options(tmp.path);
    {
      auto opened = open_ok(o);
      for (uint64_t w = 1; w <= 6; ++w) REQUIRE(append_data(*opened.journal, w).ok());
      REQUIRE(opened.journal->sync(6).ok());
    }
    const uint64_t last = 5 * kOneBlockRecord;  // record 6
    SUBCASE("payload cut short") { poke(chunk_path(o, 0), last + 80 + 2000, std::vector<uint8_t>(2096, 0)); }
    SUBCASE("header torn") { flip(chunk_path(o, 0), last + 30); }
    SUBCASE("payload garbled") { flip(chunk_path(o, 0), last + 80 + kBlock - 1); }
    {
      auto opened = open_ok(o);
      check_records(opened.recovery.records, 1, 5);
      CHECK(contains(opened.recovery.torn_tail, "chunk-0000 offset " + std::to_string(last)));
      Journal& j = *opened.journal;
      CHECK(j.stats().appended_wseq == 5);
      REQUIRE(append_data(j, 6).ok());
      REQUIRE(append_data(j, 7).ok());
      REQUIRE(j.sync(7).ok());
    }
    auto opened = open_ok(o);
    check_records(opened.recovery.records, 1, 7);
    CHECK(opened.recovery.torn_tail.empty());
  }

  TEST_CASE("damage with whole newer records after it is kCorruption naming file and offset") {
    TempDir tmp;
    auto o = options(tmp.path);
    {
      auto opened = open_ok(o);
      for (uint64_t w = 1; w <= 6; ++w) REQUIRE(append_data(*opened.journal, w).ok());
      REQUIRE(opened.journal->sync(6).ok());
    }
    const uint64_t second = kOneBlockRecord;
    SUBCASE("payload byte flipped") { flip(chunk_path(o, 0), second + 80 + 100); }
    SUBCASE("header byte flipped") { flip(chunk_path(o, 0), second + 40); }
    // No magic left: only a look past the end of the chain finds the
    // records that follow it (see "Opening" in journal.h).
    SUBCASE("first sector zeroed") { poke(chunk_path(o, 0), second, std::vector<uint8_t>(512, 0)); }
    auto r = Journal::Open(o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().is(Status::Code::kCorruption));
    CHECK(contains(r.status().message(), chunk_path(o, 0) + " offset " + std::to_string(second)));
    CHECK(contains(r.status().message(), "wseq 3"));
    MESSAGE(r.status().ToString());
    // Refused every time, never skipped.
    CHECK(Journal::Open(o).status().is(Status::Code::kCorruption));
  }

  TEST_CASE("a header with a valid checksum but a block count past 2^64 bytes is damage, not a record") {
    // nblocks = 2^52 + 1: times 4096 it wraps to 4096, the one block the
    // payload holds, so a product check would take it for a whole record.
    TempDir tmp;
    auto o = options(tmp.path);
    {
      auto opened = open_ok(o);
      for (uint64_t w = 1; w <= 3; ++w) REQUIRE(append_data(*opened.journal, w).ok());
      REQUIRE(opened.journal->sync(3).ok());
    }
    const uint64_t second = kOneBlockRecord;
    std::vector<std::byte> header(80);
    {
      int fd = ::open(chunk_path(o, 0).c_str(), O_RDONLY);
      REQUIRE(fd >= 0);
      REQUIRE(::pread(fd, header.data(), header.size(), static_cast<off_t>(second)) == 80);
      ::close(fd);
    }
    const uint64_t huge = (uint64_t{1} << 52) + 1;
    for (int i = 0; i < 8; ++i) header[40 + i] = std::byte(static_cast<uint8_t>(huge >> (8 * i)));  // nblocks
    for (int i = 0; i < 4; ++i) header[12 + i] = std::byte{0};                                      // its crc
    const uint32_t crc = crc32c(std::span<const std::byte>(header));
    for (int i = 0; i < 4; ++i) header[12 + i] = std::byte(static_cast<uint8_t>(crc >> (8 * i)));
    std::vector<uint8_t> raw(80);
    std::memcpy(raw.data(), header.data(), 80);
    poke(chunk_path(o, 0), second, raw);
    auto r = Journal::Open(o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().is(Status::Code::kCorruption));
    CHECK(contains(r.status().message(), chunk_path(o, 0) + " offset " + std::to_string(second)));
    MESSAGE(r.status().ToString());
  }

  TEST_CASE("a large record whose magic and journal_id are wiped, with a newer record after it, is kCorruption") {
    // The wiped header reads as nothing of ours, so only a look at the rest
    // of the chunk (past the 2.5 MiB payload) finds the newer record that
    // proves it was not the tail (see "Opening" in journal.h).
    TempDir tmp;
    auto o = options(tmp.path, 8 << 20, 4);
    const uint64_t big = 640;  // blocks: 2.5 MiB
    int chunk = 0;
    uint64_t at = 0;
    SUBCASE("in the chunk the chain ends in") {
      {
        auto opened = open_ok(o);
        Journal& j = *opened.journal;
        REQUIRE(big * kBlock <= j.max_payload_bytes());
        REQUIRE(append_data(j, 1).ok());
        REQUIRE(append_data(j, 2, big).ok());
        REQUIRE(append_data(j, 3).ok());
        REQUIRE(j.sync(3).ok());
      }
      at = kOneBlockRecord;
    }
    SUBCASE("first in the next chunk") {
      {
        auto opened = open_ok(o);
        Journal& j = *opened.journal;
        REQUIRE(append_data(j, 1, 1536).ok());  // 6 MiB: wseq 2 does not fit after it
        REQUIRE(append_data(j, 2, big).ok());   // chunk 1, offset 0, behind chunk 0's pad
        REQUIRE(append_data(j, 3).ok());
        REQUIRE(j.sync(3).ok());
      }
      chunk = 1;
    }
    poke(chunk_path(o, chunk), at, std::vector<uint8_t>(8, 0));       // magic
    poke(chunk_path(o, chunk), at + 16, std::vector<uint8_t>(8, 0));  // journal_id
    auto r = Journal::Open(o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().is(Status::Code::kCorruption));
    CHECK(contains(r.status().message(), chunk_path(o, chunk) + " offset " + std::to_string(at)));
    CHECK(contains(r.status().message(), "wseq 2"));
    MESSAGE(r.status().ToString());
    CHECK(Journal::Open(o).status().is(Status::Code::kCorruption));
  }

  TEST_CASE("a crash while starting a freed chunk is a torn tail; damage to a live chunk's start is not") {
    TempDir tmp;
    auto o = small_ring(tmp.path);
    SUBCASE("torn start of a reused chunk") {
      {
        auto opened = open_ok(o);
        Journal& j = *opened.journal;
        for (uint64_t w = 1; w <= 12; ++w) REQUIRE(append_data(j, w).ok());
        j.release(3);
        REQUIRE(append_data(j, 13).ok());  // into chunk 0, after chunk 3's pad (released 3) is synced
        REQUIRE(j.sync(13).ok());
      }
      poke(chunk_path(o, 0), 80 + 1000, std::vector<uint8_t>(500, 0));  // the crash cut record 13 short
      auto opened = open_ok(o);
      check_records(opened.recovery.records, 4, 12);
      CHECK(contains(opened.recovery.torn_tail, "chunk-0000 offset 0"));
    }
    SUBCASE("live records lost at a chunk's start") {
      {
        auto opened = open_ok(o);
        Journal& j = *opened.journal;
        for (uint64_t w = 1; w <= 12; ++w) REQUIRE(append_data(j, w).ok());
        REQUIRE(j.sync(12).ok());
      }
      flip(chunk_path(o, 0), 20);
      auto r = Journal::Open(o);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().is(Status::Code::kCorruption));
      CHECK(contains(r.status().message(), "wseq 1 to 3"));
      CHECK(contains(r.status().message(), chunk_path(o, 0) + " offset 0"));
      MESSAGE(r.status().ToString());
    }
    SUBCASE("a whole middle record lost at a chunk's end") {
      {
        auto opened = open_ok(o);
        Journal& j = *opened.journal;
        for (uint64_t w = 1; w <= 9; ++w) REQUIRE(append_data(j, w).ok());
        REQUIRE(j.sync(9).ok());
      }
      flip(chunk_path(o, 1), 2 * kOneBlockRecord + 200);  // wseq 6, the last of chunk 1
      auto r = Journal::Open(o);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().is(Status::Code::kCorruption));
      CHECK(contains(r.status().message(), chunk_path(o, 1) + " offset " + std::to_string(2 * kOneBlockRecord)));
    }
  }

  TEST_CASE("a damaged meta is kCorruption; a missing meta starts a new journal") {
    TempDir tmp;
    auto o = options(tmp.path);
    { auto opened = open_ok(o); }
    SUBCASE("damaged") {
      flip(o.dir + "/meta", 20);
      auto r = Journal::Open(o);
      CHECK(r.status().is(Status::Code::kCorruption));
      CHECK(contains(r.status().message(), o.dir + "/meta"));
    }
    SUBCASE("missing") {
      std::filesystem::remove(o.dir + "/meta");
      CHECK(open_ok(o).recovery.created);
    }
    SUBCASE("a chunk file missing") {
      std::filesystem::remove(chunk_path(o, 2));
      auto r = Journal::Open(o);
      CHECK(r.status().is(Status::Code::kCorruption));
      CHECK(contains(r.status().message(), "chunk-0002"));
    }
  }

  TEST_CASE("a failing disk: write and fdatasync errors are kIOError and sticky; nothing synced is lost") {
    TempDir tmp;
    auto o = small_ring(tmp.path);
    // Fault at the k-th chunk I/O call, for every k until the scenario runs
    // through: each time, every record whose sync succeeded is recovered.
    for (int fault_at = 1;; ++fault_at) {
      CAPTURE(fault_at);
      REQUIRE(Journal::Discard(o.dir).ok());
      auto faulty = o;
      std::atomic<int> calls{0};
      std::atomic<bool> fired{false};
      faulty.inject_error = [&](const char* op) {
        if (++calls != fault_at) return 0;
        fired = true;
        return std::string(op) == "pwrite" ? ENOSPC : EIO;
      };
      uint64_t synced = 0, released = 0;
      Status failure;
      {
        auto opened = open_ok(faulty);
        Journal& j = *opened.journal;
        for (uint64_t w = 1; w <= 20 && failure.ok(); ++w) {
          Status st = append_data(j, w);
          if (st.ok() && w % 3 == 0) {
            st = j.sync(w);
            if (st.ok()) synced = w;
          }
          if (w > 6) j.release(released = w - 6);
          if (!st.ok()) failure = st;
        }
        if (!fired.load()) {
          CHECK(failure.ok());
          break;
        }
        REQUIRE_FALSE(failure.ok());
        CHECK(failure.is(Status::Code::kIOError));
        // Sticky: the journal stays failed even though the disk "recovered".
        CHECK(j.stats().failed);
        CHECK(j.sync(j.stats().appended_wseq).is(Status::Code::kIOError));
        CHECK(append_data(j, j.stats().appended_wseq + 1).is(Status::Code::kIOError));
      }
      auto opened = open_ok(o);
      const auto& rec = opened.recovery.records;
      if (synced > 0) {
        REQUIRE(!rec.empty());
        CHECK(rec.back().wseq >= synced);
        CHECK(rec.front().wseq <= released + 1);
        check_records(rec, rec.front().wseq, rec.back().wseq);
      }
      REQUIRE(fault_at < 200);
    }
  }

  TEST_CASE("a journal dir that cannot be created is kIOError") {
    TempDir tmp;
    // Running as root here, a read-only directory would not stop us: a
    // regular file where the directory should be does.
    std::ofstream(tmp.path + "/file") << "x";
    auto o = options(tmp.path + "/file");
    auto r = Journal::Open(o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().is(Status::Code::kIOError));
    CHECK(contains(r.status().message(), tmp.path + "/file/journal"));
  }

  TEST_CASE("a disk that refuses the chunk files' bytes fails Open with kIOError and leaves nothing behind") {
    // A real write error from the kernel, without privileges: a file size
    // limit (RLIMIT_FSIZE) below one chunk makes the zero fill fail with
    // EFBIG, as a full disk fails it with ENOSPC.
    TempDir tmp;
    auto o = small_ring(tmp.path);
    REQUIRE(std::filesystem::create_directories(o.dir));
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 8 * 1024;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    auto r = Journal::Open(o);
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().is(Status::Code::kIOError));
    CHECK(contains(r.status().message(), "chunk-0000"));
    MESSAGE(r.status().ToString());
    CHECK(std::filesystem::is_empty(o.dir));
    CHECK(open_ok(o).recovery.created);  // with room, it opens
  }
}
