// Journal: the on-disk format, group commit, the ring, sequencing,
// back-pressure and geometry. Damage, torn tails and failing disks are in
// journal_damage_test.cc.
#include "src/engine/journal.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <future>
#include <thread>

#include "tests/unit/journal_helpers.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace portalbd::testing::journal;
using portalbd::testing::TempDir;

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

  TEST_CASE("Open reads what the journal holds, not its capacity") {
    TempDir tmp;
    auto o = options(tmp.path, 4 << 20, 64);  // 256 MiB
    const uint64_t capacity = o.capacity_bytes;
    auto open_counted = [&](uint64_t* read) {
      const uint64_t before = process_bytes_read();
      auto opened = open_ok(o);
      *read = process_bytes_read() - before;
      MESSAGE("read " << *read << " bytes (Open counted " << opened.recovery.chunk_bytes_read
                      << " of chunks; whole ring " << opened.recovery.read_whole_ring << ")");
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
                          Case{"laps old (its chunk rewritten since)", early, true}, Case{"damaged", torn, true}}) {
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
      j.release(5);                     // a segment holding 4 and 5 was committed
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
      REQUIRE(append_data(j, 2).ok());      // 4608 bytes more: past a quarter of 16 KiB
      CHECK(wait_zeroed(j, 1) == 1);        // chunk 1, ahead of the head (chunk 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK(j.stats().chunks_zeroed == 1);                                // not chunk 2: the head has not moved
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
