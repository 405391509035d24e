// Journal: the on-disk format, group commit, recovery of torn tails and
// damage, the ring, back-pressure and failing disks.
#include "src/engine/journal.h"

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
#include <future>
#include <thread>

#include "src/util/crc32c.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using portalbd::testing::TempDir;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kBlock = Journal::kBlockBytes;
// A one-block record takes align(80 + 4096) bytes; a record without payload one kAlign.
constexpr uint64_t kOneBlockRecord = 4608;

JournalOptions options(const std::string& dir, uint64_t chunk_bytes = 1 << 20, uint64_t chunks = 4) {
  JournalOptions o;
  o.dir = dir + "/journal";
  o.chunk_bytes = chunk_bytes;
  o.capacity_bytes = chunk_bytes * chunks;
  o.volume_uuid = "vol-1";
  o.writer_id = "writer-1";
  return o;
}

// Chunks of 16 KiB hold three one-block records each (the last 512 bytes are
// the pad's).
JournalOptions small_ring(const std::string& dir, uint64_t chunks = 4) { return options(dir, 16 * 1024, chunks); }

Clock::time_point far() { return Clock::now() + std::chrono::seconds(20); }
Clock::time_point past() { return Clock::now() - std::chrono::seconds(1); }

// Payload bytes that name their record.
std::vector<std::byte> payload(uint64_t wseq, uint64_t nblocks = 1) {
  std::vector<std::byte> v(nblocks * kBlock);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::byte(static_cast<uint8_t>(wseq * 131 + i / 7));
  return v;
}

Status append_data(Journal& j, uint64_t wseq, uint64_t nblocks = 1, Clock::time_point deadline = far()) {
  return j.append(wseq, wseq * 10, nblocks, ExtentState::kData, payload(wseq, nblocks), deadline);
}

OpenedJournal open_ok(const JournalOptions& o) {
  auto r = Journal::Open(o);
  if (!r.ok()) FAIL_CHECK(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Checks that the records are consecutive data records first..last made by append_data.
void check_records(const std::vector<JournalRecord>& records, uint64_t first, uint64_t last) {
  REQUIRE(records.size() == last - first + 1);
  for (size_t i = 0; i < records.size(); ++i) {
    const JournalRecord& r = records[i];
    CHECK(r.wseq == first + i);
    CHECK(r.lba == r.wseq * 10);
    CHECK(r.state == ExtentState::kData);
    CHECK(r.data == payload(r.wseq, r.nblocks));
  }
}

std::string chunk_path(const JournalOptions& o, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "chunk-%04d", i);
  return o.dir + "/" + buf;
}

void poke(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes) {
  int fd = ::open(path.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

void flip(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  uint8_t b = 0;
  REQUIRE(::pread(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  b ^= 0x5a;
  REQUIRE(::pwrite(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  ::close(fd);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// What this process has read through read(2) and pread(2) so far
// (/proc/self/io rchar): every byte Open reads, whichever way it reads it.
uint64_t process_bytes_read() {
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  FAIL("no rchar in /proc/self/io");
  return 0;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace

TEST_SUITE("engine.journal") {
  TEST_CASE("append, sync and reopen return the live records in order, with their writer") {
    TempDir tmp;
    auto o = options(tmp.path);
    {
      auto opened = open_ok(o);
      CHECK(opened.recovery.created);
      CHECK(opened.recovery.records.empty());
      CHECK(opened.recovery.previous_writer_id.empty());
      Journal& j = *opened.journal;
      REQUIRE(append_data(j, 1).ok());
      REQUIRE(j.append(2, 7, 3, ExtentState::kZero, {}, far()).ok());
      REQUIRE(append_data(j, 3, 4).ok());
      REQUIRE(j.append(4, 9, 1, ExtentState::kHole, {}, far()).ok());
      REQUIRE(j.sync(4).ok());
      auto s = j.stats();
      CHECK(s.appended_wseq == 4);
      CHECK(s.synced_wseq == 4);
      CHECK(s.live_records == 4);
      CHECK(s.oldest_live_wseq == 1);
      CHECK(s.used_bytes == kOneBlockRecord + 512 + 16896 + 512);
    }
    // Another writer opens it: told who wrote it; the meta names the new
    // writer only once it appends.
    o.writer_id = "writer-2";
    for (int round = 0; round < 2; ++round) {
      auto opened = open_ok(o);
      const auto& rec = opened.recovery.records;
      REQUIRE(rec.size() == 4);
      CHECK(opened.recovery.previous_writer_id == "writer-1");
      CHECK(opened.recovery.newest_wseq == 4);
      CHECK(rec[0].wseq == 1);
      CHECK(rec[0].data == payload(1));
      CHECK((rec[1].wseq == 2 && rec[1].lba == 7 && rec[1].nblocks == 3 && rec[1].state == ExtentState::kZero));
      CHECK(rec[1].data.empty());
      CHECK((rec[2].wseq == 3 && rec[2].nblocks == 4 && rec[2].data == payload(3, 4)));
      CHECK((rec[3].wseq == 4 && rec[3].state == ExtentState::kHole));
    }
    {
      auto opened = open_ok(o);
      REQUIRE(append_data(*opened.journal, 5).ok());
      REQUIRE(opened.journal->sync(5).ok());
    }
    auto opened = open_ok(o);
    CHECK(opened.recovery.previous_writer_id == "writer-2");
    CHECK(opened.recovery.records.size() == 5);
  }

  TEST_CASE("appends are refused unless in sequence; a later wseq waits for its turn") {
    TempDir tmp;
    auto opened = open_ok(options(tmp.path));
    Journal& j = *opened.journal;
    // A fresh journal expects wseq 1 until release() says storage holds more.
    CHECK(append_data(j, 5, 1, Clock::now() + std::chrono::milliseconds(20)).is(Status::Code::kBusy));
    j.release(4);
    REQUIRE(append_data(j, 5).ok());
    CHECK(append_data(j, 5).is(Status::Code::kInvalidArgument));  // appended already
    // Released and never appended: a late append is a no-op, also after 5
    // (see "a late append of a committed write ..." below).
    CHECK(append_data(j, 3).ok());
    CHECK(j.append(6, 0, 1, ExtentState::kData, payload(6, 2), far()).is(Status::Code::kInvalidArgument));
    CHECK(j.append(6, 0, 1, ExtentState::kZero, payload(6), far()).is(Status::Code::kInvalidArgument));
    CHECK(j.max_payload_bytes() == (1 << 20) - kBlock);
    CHECK(j.append(6, 0, 256, ExtentState::kData, std::vector<std::byte>(256 * kBlock), far())
              .is(Status::Code::kInvalidArgument));
    CHECK(j.sync(9).is(Status::Code::kInvalidArgument));
    // wseq 7 waits until 6 is in.
    auto seven = std::async(std::launch::async, [&] { return append_data(j, 7); });
    CHECK(seven.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
    REQUIRE(append_data(j, 6).ok());
    REQUIRE(seven.get().ok());
    REQUIRE(j.sync(7).ok());
    CHECK(j.stats().appended_wseq == 7);
  }

  TEST_CASE("group commit: concurrent syncs share fdatasyncs; every synced record survives reopen") {
    TempDir tmp;
    auto o = options(tmp.path, 256 * 1024, 8);
    std::atomic<int> fdatasyncs{0};
    o.inject_error = [&](const char* op) {
      if (std::string(op) == "fdatasync") {
        fdatasyncs++;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a disk's flush takes time
      }
      return 0;
    };
    constexpr int kThreads = 8, kEach = 40;
    std::atomic<uint64_t> counter{0};
    std::atomic<uint64_t> released{0};
    std::atomic<int> failures{0};
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
          for (int i = 0; i < kEach; ++i) {
            const uint64_t w = ++counter;  // assigned under "the caller's lock"; appended in any order
            if (!append_data(j, w).ok() || !j.sync(w).ok()) failures++;
            // Storage catches up now and then: keep the ring from filling.
            if (w % 50 == 0 && w > 100) {
              uint64_t want = w - 100, cur = released.load();
              while (cur < want && !released.compare_exchange_weak(cur, want)) {
              }
              j.release(released.load());
            }
          }
        });
      }
      for (auto& t : threads) t.join();
      CHECK(failures.load() == 0);
      auto s = j.stats();
      CHECK(s.syncs == kThreads * kEach);
      CHECK(s.synced_wseq == kThreads * kEach);
      MESSAGE("syncs=" << s.syncs << " fdatasyncs=" << s.fdatasyncs);
      CHECK(s.fdatasyncs * 2 < s.syncs);  // about 1 in 4 here; margin for a loaded machine
      CHECK(static_cast<uint64_t>(fdatasyncs.load()) == s.fdatasyncs);
    }
    o.inject_error = nullptr;
    auto opened = open_ok(o);
    const auto& rec = opened.recovery.records;
    REQUIRE(!rec.empty());
    CHECK(rec.back().wseq == kThreads * kEach);
    CHECK(rec.front().wseq <= released.load() + 1);
    check_records(rec, rec.front().wseq, kThreads * kEach);
  }

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
    for (int i = 0; i < 4; ++i) header[12 + i] = std::byte{0};                                       // its crc
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

  TEST_CASE("Open reads what the journal holds, not its capacity") {
    TempDir tmp;
    auto o = options(tmp.path, 4 << 20, 64);  // 256 MiB
    const uint64_t capacity = o.capacity_bytes;
    auto open_counted = [&](uint64_t* read) {
      const uint64_t before = process_bytes_read();
      auto opened = open_ok(o);
      *read = process_bytes_read() - before;
      MESSAGE("read " << *read << " bytes (Open counted " << opened.recovery.chunk_bytes_read << " of chunks; whole ring "
                      << opened.recovery.read_whole_ring << ")");
      CHECK(opened.recovery.chunk_bytes_read <= *read);
      return opened;
    };
    uint64_t read = 0;
    { auto created = open_ok(o); }
    {
      auto empty = open_counted(&read);  // a journal that holds nothing
      CHECK(empty.recovery.records.empty());
      CHECK_FALSE(empty.recovery.read_whole_ring);
      // The rest of the chunk the chain ends in (all of chunk 0 here), 1 MiB
      // of the next, and 64 chunk headers.
      CHECK(read < o.chunk_bytes + (2 << 20));
    }
    uint64_t w = 0;
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      // Three chunks' worth, nearly all released: four records stay live.
      while (w < 2000) {
        ++w;
        REQUIRE(append_data(j, w).ok());
        if (w > 3) j.release(w - 3);
      }
      REQUIRE(j.sync(w).ok());
    }
    for (int round = 0; round < 2; ++round) {  // after a crash; then after the Open that recovered it
      auto opened = open_counted(&read);
      check_records(opened.recovery.records, w - 3, w);
      CHECK(opened.recovery.released_wseq == w - 4);  // the newest record's watermark, as before
      CHECK_FALSE(opened.recovery.read_whole_ring);
      CHECK(read < o.chunk_bytes + (2 << 20) + 4 * kOneBlockRecord);
    }
    // A journal without the start file (one of an older portalbd) is read
    // whole, with the same result, and has one from then on.
    std::filesystem::remove(o.dir + "/start");
    {
      auto opened = open_counted(&read);
      check_records(opened.recovery.records, w - 3, w);
      CHECK(opened.recovery.read_whole_ring);
      CHECK(read >= capacity);
    }
    auto opened = open_counted(&read);
    check_records(opened.recovery.records, w - 3, w);
    CHECK_FALSE(opened.recovery.read_whole_ring);
    CHECK(read < o.chunk_bytes + (2 << 20) + 4 * kOneBlockRecord);
  }

  TEST_CASE("after the ring wraps and frees part of it, Open replays exactly the live records, from any start") {
    TempDir tmp;
    auto o = small_ring(tmp.path, 8);  // 8 chunks of 3 one-block records
    uint64_t w = 0;
    std::string early, recent, torn;  // start files: laps old, a few records old
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      for (int i = 0; i < 100; ++i) {
        ++w;
        REQUIRE(append_data(j, w).ok());
        if (w > 7) j.release(w - 7);  // live records span three chunks
        if (w == 30) early = slurp(o.dir + "/start");
        if (w == 95) recent = slurp(o.dir + "/start");
        if (i % 5 == 0) REQUIRE(j.sync(w).ok());
      }
      REQUIRE(j.sync(w).ok());
      CHECK(j.stats().live_records == 7);
    }
    torn = slurp(o.dir + "/start");
    torn[20] = static_cast<char>(torn[20] ^ 0x40);
    const std::string current = slurp(o.dir + "/start");
    struct Case {
      const char* name;
      std::string start;
      bool whole_ring;
    };
    for (const Case& c : {Case{"current", current, false}, Case{"a few records old", recent, false},
                          Case{"laps old (its chunk rewritten since)", early, true},
                          Case{"damaged", torn, true}}) {
      CAPTURE(c.name);
      spit(o.dir + "/start", c.start);
      auto opened = open_ok(o);
      // The newest record carries the watermark from before its append.
      CHECK(opened.recovery.released_wseq == w - 8);
      check_records(opened.recovery.records, w - 7, w);
      CHECK(opened.recovery.newest_wseq == w);
      CHECK(opened.recovery.read_whole_ring == c.whole_ring);
      CHECK(opened.recovery.torn_tail.empty());
    }
    // Going on from there wraps on, and a clean close leaves only the live.
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      j.release(w - 7);
      for (int i = 0; i < 50; ++i) {
        ++w;
        REQUIRE(append_data(j, w).ok());
        j.release(w - 4);
      }
      REQUIRE(j.sync(w).ok());
      REQUIRE(j.close().ok());
    }
    auto opened = open_ok(o);
    CHECK_FALSE(opened.recovery.read_whole_ring);
    check_records(opened.recovery.records, w - 3, w);
  }

  TEST_CASE("the ring wraps: only live records come back, in order, none from earlier laps") {
    TempDir tmp;
    bool with_close = false;
    SUBCASE("after a crash") {}
    SUBCASE("after close()") { with_close = true; }
    auto o = small_ring(tmp.path);
    uint64_t w = 0;
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      CHECK(j.max_payload_bytes() == 3 * kBlock);
      // Mixed sizes, so that laps do not line up.
      for (int i = 0; i < 300; ++i) {
        ++w;
        Status st = (i % 7 == 3) ? j.append(w, w * 10, 2, ExtentState::kZero, {}, far())
                                 : append_data(j, w, 1 + (i % 5 == 0) + (i % 11 == 0));
        REQUIRE(st.ok());
        if (i % 4 == 0) REQUIRE(j.sync(w).ok());
        if (w > 5) j.release(w - 5);
        CHECK(j.stats().used_bytes <= j.stats().capacity_bytes);
      }
      REQUIRE(j.sync(w).ok());
      CHECK(j.stats().live_records == 5);
      if (with_close) REQUIRE(j.close().ok());
    }
    for (int round = 0; round < 2; ++round) {
      auto opened = open_ok(o);
      const auto& rec = opened.recovery.records;
      REQUIRE(!rec.empty());
      // The release watermark reached disk with the last append (or with
      // close()): released records past it may come back, never a stale or
      // missing one.
      CHECK(rec.front().wseq == opened.recovery.released_wseq + 1);
      if (with_close) {
        CHECK(rec.front().wseq == w - 4);
      } else {
        CHECK(rec.front().wseq <= w - 5);
      }
      CHECK(rec.back().wseq == w);
      for (size_t i = 0; i < rec.size(); ++i) {
        CHECK(rec[i].wseq == rec.front().wseq + i);
        CHECK(rec[i].lba == rec[i].wseq * 10);
        if (rec[i].state == ExtentState::kData) CHECK(rec[i].data == payload(rec[i].wseq, rec[i].nblocks));
      }
      // Go on from there: more laps, then the same check.
      Journal& j = *opened.journal;
      j.release(w - 5);
      for (int i = 0; i < 40; ++i) {
        ++w;
        REQUIRE(append_data(j, w, 1 + (i % 3 == 0)).ok());
        j.release(w - 5);
      }
      REQUIRE(j.sync(w).ok());
      if (with_close) REQUIRE(j.close().ok());
    }
  }

  TEST_CASE("a full journal makes append wait for release(); with a past deadline it fails and keeps everything") {
    TempDir tmp;
    auto o = small_ring(tmp.path);
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      for (uint64_t w = 1; w <= 12; ++w) REQUIRE(append_data(j, w).ok());  // 4 chunks of 3
      REQUIRE(j.sync(12).ok());
      auto full = j.stats();
      CHECK(full.used_bytes == 3 * o.chunk_bytes + 3 * kOneBlockRecord);
      Status st = append_data(j, 13, 1, past());
      CHECK(st.is(Status::Code::kBusy));
      CHECK(contains(st.message(), "oldest unreleased wseq 1"));
      CHECK(j.stats().appended_wseq == 12);

      std::atomic<bool> done{false};
      auto waiter = std::async(std::launch::async, [&] {
        Status s = append_data(j, 13);
        done = true;
        return s;
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      CHECK_FALSE(done.load());
      j.release(2);  // chunk 0 still holds wseq 3
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK_FALSE(done.load());
      j.release(3);
      REQUIRE(waiter.get().ok());
      REQUIRE(j.sync(13).ok());
      CHECK(j.stats().oldest_live_wseq == 4);
    }
    auto opened = open_ok(o);
    check_records(opened.recovery.records, 4, 13);
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

  TEST_CASE("release() past the newest record moves the sequence on, across reopen") {
    TempDir tmp;
    auto o = small_ring(tmp.path);
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      for (uint64_t w = 1; w <= 2; ++w) REQUIRE(append_data(j, w).ok());
      j.release(1000);  // e.g. the journal was off while storage took writes up to 1000
      CHECK(append_data(j, 2).is(Status::Code::kInvalidArgument));  // appended already
      CHECK(append_data(j, 3).ok());                                // in storage: nothing to write
      REQUIRE(append_data(j, 1001).ok());
      REQUIRE(append_data(j, 1002).ok());
      REQUIRE(j.sync(1002).ok());
    }
    auto opened = open_ok(o);
    check_records(opened.recovery.records, 1001, 1002);
    CHECK(opened.recovery.released_wseq == 1000);
  }

  TEST_CASE("an append that storage committed before it came is a no-op; the sequence goes on") {
    // The caller buffers a write, then appends it outside its lock: an upload
    // may commit it (release) in between.
    TempDir tmp;
    auto o = small_ring(tmp.path);
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      for (uint64_t w = 1; w <= 3; ++w) REQUIRE(append_data(j, w).ok());
      j.release(5);  // a segment holding 4 and 5 was committed
      REQUIRE(append_data(j, 5).ok());  // late, and out of order: nothing to write
      REQUIRE(append_data(j, 4).ok());
      CHECK(j.sync(5).ok());
      CHECK(j.stats().appended_wseq == 3);
      CHECK(append_data(j, 3).is(Status::Code::kInvalidArgument));  // still refused: appended, not skipped
      REQUIRE(append_data(j, 6).ok());
      REQUIRE(j.sync(6).ok());
    }
    auto opened = open_ok(o);
    check_records(opened.recovery.records, 6, 6);
  }

  TEST_CASE("a late append of a committed write is a no-op even after later writes were appended") {
    // Found by the file-journal crash loop (seed 679536098, 60 iterations):
    // write W is buffered, an upload commits it and release() moves the
    // sequence past it, later writes are appended, and only then does W's
    // append come. It used to be refused ("was appended already"), and the
    // client's WRITE answered EINVAL.
    TempDir tmp;
    auto o = small_ring(tmp.path);
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      for (uint64_t w = 1; w <= 3; ++w) REQUIRE(append_data(j, w).ok());
      j.release(6);  // a segment holding 4 to 6 was committed before their appends
      REQUIRE(append_data(j, 7).ok());
      REQUIRE(append_data(j, 8).ok());
      CHECK(append_data(j, 5).ok());  // late, after 7 and 8: nothing to write
      CHECK(append_data(j, 4).ok());
      CHECK(append_data(j, 6).ok());
      CHECK(j.stats().appended_wseq == 8);
      CHECK(append_data(j, 3).is(Status::Code::kInvalidArgument));  // appended, not skipped
      CHECK(append_data(j, 8).is(Status::Code::kInvalidArgument));
      REQUIRE(j.sync(8).ok());
    }
    auto opened = open_ok(o);
    check_records(opened.recovery.records, 7, 8);
  }

  TEST_CASE("a journal of another volume is refused while it holds live records; one dir, one Journal; Discard") {
    TempDir tmp;
    auto o = options(tmp.path);
    {
      auto opened = open_ok(o);
      REQUIRE(append_data(*opened.journal, 1).ok());
      REQUIRE(opened.journal->sync(1).ok());
      auto second = Journal::Open(o);
      CHECK(second.status().is(Status::Code::kBusy));
      CHECK(Journal::Discard(o.dir).is(Status::Code::kBusy));
    }
    auto other = o;
    other.volume_uuid = "vol-2";
    auto r = Journal::Open(other);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().is(Status::Code::kInvalidArgument));
    CHECK(contains(r.status().message(), "belongs to volume vol-1, not vol-2, and holds 1 writes"));
    CHECK(open_ok(o).recovery.records.size() == 1);  // untouched

    REQUIRE(Journal::Discard(o.dir).ok());
    CHECK_FALSE(std::filesystem::exists(o.dir + "/meta"));
    CHECK_FALSE(std::filesystem::exists(chunk_path(o, 0)));
    auto fresh = open_ok(other);
    CHECK(fresh.recovery.created);
    CHECK(fresh.recovery.records.empty());
  }

  TEST_CASE("a journal of another volume with nothing live is laid out anew for the new one") {
    // A state dir reused for another bucket after a clean stop.
    TempDir tmp;
    auto o = options(tmp.path);
    {
      auto opened = open_ok(o);
      REQUIRE(append_data(*opened.journal, 1).ok());
      REQUIRE(opened.journal->sync(1).ok());
      opened.journal->release(1);
      REQUIRE(opened.journal->close().ok());
    }
    auto other = o;
    other.volume_uuid = "vol-2";
    {
      auto fresh = open_ok(other);
      CHECK(fresh.recovery.created);
      CHECK(fresh.recovery.records.empty());
      REQUIRE(append_data(*fresh.journal, 1).ok());
      REQUIRE(fresh.journal->sync(1).ok());
    }
    // It is vol-2's now: vol-1 is refused (vol-2's record is live).
    CHECK(Journal::Open(o).status().is(Status::Code::kInvalidArgument));
    check_records(open_ok(other).recovery.records, 1, 1);
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

  TEST_CASE("a new geometry applies when nothing is live, and waits while records are") {
    TempDir tmp;
    auto o = small_ring(tmp.path, 4);
    {
      auto opened = open_ok(o);
      REQUIRE(append_data(*opened.journal, 1).ok());
      REQUIRE(opened.journal->sync(1).ok());
      REQUIRE(opened.journal->close().ok());
      CHECK(append_data(*opened.journal, 2).is(Status::Code::kCancelled));
    }
    auto bigger = small_ring(tmp.path, 6);
    {
      auto opened = open_ok(bigger);  // record 1 is live: the journal keeps its 4 chunks
      check_records(opened.recovery.records, 1, 1);
      CHECK(opened.journal->stats().capacity_bytes == 4 * o.chunk_bytes);
      opened.journal->release(1);
      REQUIRE(opened.journal->close().ok());
    }
    {
      auto opened = open_ok(bigger);  // nothing live: laid out anew
      CHECK(opened.recovery.records.empty());
      CHECK_FALSE(opened.recovery.created);
      CHECK(opened.journal->stats().capacity_bytes == 6 * o.chunk_bytes);
      CHECK(std::filesystem::exists(chunk_path(bigger, 5)));
      CHECK(append_data(*opened.journal, 1).is(Status::Code::kInvalidArgument));
      REQUIRE(append_data(*opened.journal, 2).ok());  // the sequence goes on
      REQUIRE(opened.journal->sync(2).ok());
    }
    auto opened = open_ok(bigger);
    check_records(opened.recovery.records, 2, 2);
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

  TEST_CASE("a new journal writes chunk 0 at once, each other chunk once the one before it is a quarter full") {
    TempDir tmp;
    auto o = small_ring(tmp.path, 4);
    auto wait_zeroed = [](Journal& j, uint64_t n) {
      const auto give_up = Clock::now() + std::chrono::seconds(20);
      while (j.stats().chunks_zeroed < n && Clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      return j.stats().chunks_zeroed;
    };
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK(j.stats().chunks_zeroed == 0);  // chunk 0 is empty: nothing to get ahead of yet
      REQUIRE(j.append_marker(1, 0, 256, far()).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK(j.stats().chunks_zeroed == 0);  // a marker is 512 bytes: not a quarter of the chunk
      REQUIRE(append_data(j, 2).ok());  // 4608 bytes more: past a quarter of 16 KiB
      CHECK(wait_zeroed(j, 1) == 1);    // chunk 1, ahead of the head (chunk 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK(j.stats().chunks_zeroed == 1);  // not chunk 2: the head has not moved
      for (uint64_t w = 3; w <= 5; ++w) REQUIRE(append_data(j, w).ok());  // the head is chunk 1, past a quarter
      CHECK(wait_zeroed(j, 2) == 2);
      // Around the ring: the zeroer's chunks hold what is appended later.
      j.release(5);
      for (uint64_t w = 6; w <= 10; ++w) REQUIRE(append_data(j, w).ok());
      CHECK(wait_zeroed(j, 3) == 3);  // chunks 1, 2, 3; chunk 0 was written at creation
      REQUIRE(j.sync(10).ok());
    }
    auto reopened = open_ok(o);
    check_records(reopened.recovery.records, 6, 10);
    // A journal that existed is used as it is: nothing is zeroed again.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(reopened.journal->stats().chunks_zeroed == 0);
  }

  TEST_CASE("a marker keeps the sequence and replays as nothing") {
    TempDir tmp;
    auto o = small_ring(tmp.path);
    {
      auto opened = open_ok(o);
      Journal& j = *opened.journal;
      REQUIRE(append_data(j, 1).ok());
      REQUIRE(j.append_marker(2, 20, 256, far()).ok());  // 1 MiB that went to storage only
      REQUIRE(append_data(j, 3).ok());
      CHECK(j.append_marker(4, 40, 0, far()).is(Status::Code::kInvalidArgument));
      REQUIRE(j.sync(3).ok());
    }
    auto reopened = open_ok(o);
    const auto& records = reopened.recovery.records;
    REQUIRE(records.size() == 2);
    CHECK(records[0].wseq == 1);
    CHECK(records[1].wseq == 3);
    CHECK(records[1].data == payload(3));
    CHECK(reopened.recovery.newest_wseq == 3);
    CHECK(reopened.recovery.torn_tail.empty());
    CHECK(append_data(*reopened.journal, 4).ok());  // the sequence goes on after the marker's record
  }
}

