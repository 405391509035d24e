// Structured replies, metadata contexts and pipelining, with libnbd as the
// client: sparse READs come back as OFFSET_HOLE chunks, DF yields one data
// chunk, errors as error chunks; base:allocation BLOCK_STATUS; many requests
// in flight per connection answered out of order, under back-pressure.
#include <doctest/doctest.h>
#include <libnbd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "nbd/testing/fixture.h"

namespace portalbd::nbd {
namespace {

using testing::kDiskSize;
using testing::NbdHandle;
using testing::pattern;
using testing::ServerFixture;

struct ChunkSeen {
  uint64_t offset;
  size_t count;
  unsigned status;
};

int chunk_cb(void* user, const void*, size_t count, uint64_t offset, unsigned status, int*) {
  static_cast<std::vector<ChunkSeen>*>(user)->push_back({offset, count, status});
  return 0;
}

struct ExtentSeen {
  std::string context;
  std::vector<std::pair<uint32_t, uint32_t>> extents;
};

int extent_cb(void* user, const char* context, uint64_t, uint32_t* entries, size_t n, int*) {
  auto* seen = static_cast<ExtentSeen*>(user);
  seen->context = context;
  for (size_t i = 0; i + 1 < n; i += 2) seen->extents.emplace_back(entries[i], entries[i + 1]);
  return 0;
}

int context_cb(void* user, const char* name) {
  static_cast<std::vector<std::string>*>(user)->push_back(name);
  return 0;
}

}  // namespace

TEST_SUITE("nbd.structured") {
  TEST_CASE("sparse READ: holes travel as OFFSET_HOLE chunks, data as OFFSET_DATA") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    auto data = pattern(8192, 4);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 16384, 0) == 0);
    REQUIRE(nbd_zero(h.get(), 4096, 20480, 0) == 0);  // punch zeros inside the data

    std::vector<std::byte> buf(65536, std::byte{0xee});
    std::vector<ChunkSeen> chunks;
    REQUIRE(nbd_pread_structured(h.get(), buf.data(), buf.size(), 0, nbd_chunk_callback{chunk_cb, &chunks, nullptr},
                                 0) == 0);
    // [0,16K) hole, [16K,20K) data, [20K,24K) zero, [24K,64K) hole: the zero
    // and the following hole merge into one hole chunk.
    REQUIRE(chunks.size() == 3);
    CHECK(chunks[0].offset == 0);
    CHECK(chunks[0].count == 16384);
    CHECK(chunks[0].status == LIBNBD_READ_HOLE);
    CHECK(chunks[1].offset == 16384);
    CHECK(chunks[1].count == 4096);
    CHECK(chunks[1].status == LIBNBD_READ_DATA);
    CHECK(chunks[2].offset == 20480);
    CHECK(chunks[2].count == 65536 - 20480);
    CHECK(chunks[2].status == LIBNBD_READ_HOLE);
    auto expect = std::vector<std::byte>(65536);
    std::memcpy(expect.data() + 16384, data.data(), 4096);
    CHECK(buf == expect);
    // Only the data part was read from the device.
    CHECK(f.disk->reads == 1);
  }

  TEST_CASE("DF: one data chunk covering the whole request, zeros spelled out") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    auto data = pattern(4096, 8);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 4096, 0) == 0);
    std::vector<std::byte> buf(16384);
    std::vector<ChunkSeen> chunks;
    REQUIRE(nbd_pread_structured(h.get(), buf.data(), buf.size(), 0, nbd_chunk_callback{chunk_cb, &chunks, nullptr},
                                 LIBNBD_CMD_FLAG_DF) == 0);
    REQUIRE(chunks.size() == 1);
    CHECK(chunks[0].offset == 0);
    CHECK(chunks[0].count == 16384);
    CHECK(chunks[0].status == LIBNBD_READ_DATA);
    CHECK(std::memcmp(buf.data() + 4096, data.data(), 4096) == 0);
  }

  TEST_CASE("a device error mid-read becomes an error chunk after the good chunks") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    auto data = pattern(65536, 8);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0) == 0);
    std::vector<std::byte> buf(65536);
    f.disk->fail_next(Status::Corruption("checksum mismatch"));
    CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == -1);
    CHECK(nbd_get_errno() == EIO);
    CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == 0);
    CHECK(buf == data);
  }

  TEST_CASE("LIST_META_CONTEXT offers base:allocation") {
    ServerFixture f;
    NbdHandle h = f.connect("disk", true, /*opt_mode=*/true);
    REQUIRE(h);
    std::vector<std::string> names;
    // No query added: the server lists everything it has.
    REQUIRE(nbd_opt_list_meta_context(h.get(), nbd_context_callback{context_cb, &names, nullptr}) == 1);
    CHECK(names == std::vector<std::string>{"base:allocation"});
    names.clear();
    nbd_add_meta_context(h.get(), "x-other:thing");
    REQUIRE(nbd_opt_list_meta_context(h.get(), nbd_context_callback{context_cb, &names, nullptr}) == 0);
    CHECK(names.empty());
  }

  TEST_CASE("BLOCK_STATUS reports base:allocation: hole, zero, data; REQ_ONE gives one extent") {
    ServerFixture f;
    NbdHandle h = f.connect("disk", true, false, /*base_allocation=*/true);
    REQUIRE(h);
    REQUIRE(nbd_can_meta_context(h.get(), "base:allocation") == 1);
    auto data = pattern(8192, 1);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 8192, 0) == 0);
    REQUIRE(nbd_zero(h.get(), 4096, 16384, 0) == 0);

    ExtentSeen seen;
    REQUIRE(nbd_block_status(h.get(), 65536, 0, nbd_extent_callback{extent_cb, &seen, nullptr}, 0) == 0);
    CHECK(seen.context == "base:allocation");
    using E = std::pair<uint32_t, uint32_t>;
    const uint32_t hole = LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO;
    CHECK(seen.extents == std::vector<E>{{8192, hole}, {8192, 0}, {4096, LIBNBD_STATE_ZERO}, {65536 - 20480, hole}});

    ExtentSeen one;
    REQUIRE(nbd_block_status(h.get(), 65536, 8192, nbd_extent_callback{extent_cb, &one, nullptr},
                             LIBNBD_CMD_FLAG_REQ_ONE) == 0);
    CHECK(one.extents == std::vector<E>{{8192, 0}});
    CHECK(f.server->stats().block_status == 2);

    nbd_set_strict_mode(h.get(), 0);
    ExtentSeen past;
    CHECK(nbd_block_status(h.get(), 8192, kDiskSize - 4096, nbd_extent_callback{extent_cb, &past, nullptr}, 0) == -1);
    CHECK(nbd_get_errno() == EINVAL);
  }

  TEST_CASE("BLOCK_STATUS without SET_META_CONTEXT is refused") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    CHECK(nbd_can_meta_context(h.get(), "base:allocation") == 0);
    nbd_set_strict_mode(h.get(), 0);
    ExtentSeen seen;
    CHECK(nbd_block_status(h.get(), 4096, 0, nbd_extent_callback{extent_cb, &seen, nullptr}, 0) == -1);
  }
}

TEST_SUITE("nbd.pipeline") {
  TEST_CASE("many requests in flight on one connection run in parallel") {
    ServerOptions o = ServerFixture::default_options();
    o.workers_per_connection = 8;
    ServerFixture f(o);
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    constexpr int kRequests = 16;
    std::vector<std::byte> fill(kRequests * 4096);
    REQUIRE(nbd_pwrite(h.get(), fill.data(), fill.size(), 0, 0) == 0);
    f.disk->set_delay(std::chrono::milliseconds(50));
    std::vector<std::vector<std::byte>> bufs(kRequests, std::vector<std::byte>(4096));
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRequests; ++i) {
      REQUIRE(nbd_aio_pread(h.get(), bufs[i].data(), 4096, uint64_t(i) * 4096, NBD_NULL_COMPLETION, 0) > 0);
    }
    while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
    auto elapsed = std::chrono::steady_clock::now() - start;
    // Serially this is 16 x 50 ms = 800 ms; 8 workers need about 100 ms.
    CHECK(elapsed < std::chrono::milliseconds(500));
  }

  // With the only worker held by a 128 KiB READ, sends a 4 KiB READ; true
  // when it is answered while the big one still waits (it ran on the reader).
  bool small_read_overtakes_big_one(bool memory_reads, int cached_reads_every = 0) {
    ServerOptions o = ServerFixture::default_options();
    o.workers_per_connection = 1;
    ServerFixture f(o);
    f.disk->memory_reads = memory_reads;
    f.disk->cached_reads_every = cached_reads_every;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    auto data = pattern(256 * 1024, 3);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0) == 0);
    f.disk->close_gate(/*min_bytes=*/128 * 1024);
    std::vector<std::byte> big(128 * 1024), small(4096);
    const int64_t slow = nbd_aio_pread(h.get(), big.data(), big.size(), 0, NBD_NULL_COMPLETION, 0);
    REQUIRE(slow > 0);
    for (int i = 0; i < 200 && f.disk->waiting_at_gate() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(f.disk->waiting_at_gate() == 1);
    const int64_t fast = nbd_aio_pread(h.get(), small.data(), small.size(), 200 * 1024, NBD_NULL_COMPLETION, 0);
    REQUIRE(fast > 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    bool overtook = false;
    while (!overtook && std::chrono::steady_clock::now() < deadline) {
      REQUIRE(nbd_poll(h.get(), 10) != -1);
      overtook = nbd_aio_command_completed(h.get(), fast) == 1;  // retires it
    }
    f.disk->open_gate();
    while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
    CHECK(std::memcmp(big.data(), data.data(), big.size()) == 0);
    CHECK(std::memcmp(small.data(), data.data() + 200 * 1024, small.size()) == 0);
    return overtook;
  }

  TEST_CASE("small READs of a device that serves them from memory run on the reader thread") {
    CHECK(small_read_overtakes_big_one(true));
    // Otherwise they wait for a worker, here behind the held READ.
    CHECK_FALSE(small_read_overtakes_big_one(false));
  }

  TEST_CASE("small READs a device serves from its cache run on the reader thread; the others go to a worker") {
    CHECK(small_read_overtakes_big_one(false, /*cached_reads_every=*/1));
    CHECK_FALSE(small_read_overtakes_big_one(false, /*cached_reads_every=*/1000));
  }

  TEST_CASE("replies held by the reader thread arrive whole: data, holes, errors, simple and structured") {
    // Reads and writes all run on the reader when the device serves reads
    // from memory, and their replies go out in batches (ReplyWriter::*_held).
    // The same when reads are served from the device's cache (every one, or
    // one in three: the others go to a worker).
    for (int mode = 0; mode < 6; ++mode) {
      const bool structured = mode % 2 == 0;
      const int cached_every = mode / 2;  // 0: memory_reads instead
      CAPTURE(structured);
      CAPTURE(cached_every);
      ServerFixture f;
      f.disk->memory_reads = cached_every == 0;
      f.disk->cached_reads_every = cached_every == 2 ? 3 : cached_every;
      NbdHandle h = f.connect("disk", structured);
      REQUIRE(h);
      constexpr int kBlocks = 256;
      std::vector<std::vector<std::byte>> writes;
      for (int i = 0; i < kBlocks; ++i) writes.push_back(pattern(4096, uint8_t(i + 1)));
      // Every other block written, the rest left as holes.
      for (int i = 0; i < kBlocks; i += 2) {
        REQUIRE(nbd_aio_pwrite(h.get(), writes[i].data(), 4096, uint64_t(i) * 4096, NBD_NULL_COMPLETION, 0) > 0);
      }
      while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
      // Many reads in flight: single blocks, and 8 KiB spans of data + hole.
      std::vector<std::vector<std::byte>> got(kBlocks, std::vector<std::byte>(8192, std::byte{0xee}));
      for (int i = 0; i + 1 < kBlocks; ++i) {
        const size_t len = i % 3 == 0 ? 8192 : 4096;
        REQUIRE(nbd_aio_pread(h.get(), got[i].data(), len, uint64_t(i) * 4096, NBD_NULL_COMPLETION, 0) > 0);
      }
      while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
      const std::vector<std::byte> zeros(4096);
      for (int i = 0; i + 1 < kBlocks; ++i) {
        CAPTURE(i);
        for (int b = 0; b < (i % 3 == 0 ? 2 : 1); ++b) {
          const int block = i + b;
          const auto& want = block % 2 == 0 ? writes[block] : zeros;
          CHECK(std::memcmp(got[i].data() + b * 4096, want.data(), 4096) == 0);
        }
      }
      if (cached_every != 0) CHECK(f.disk->cached_reads_served > 0);
      if (cached_every == 2) CHECK(f.disk->cached_reads_served < f.disk->cached_read_offers);
      // A failed read is answered as an error, and the next one works.
      std::vector<std::byte> buf(4096);
      f.disk->fail_next(Status::Corruption("checksum mismatch"));
      CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == -1);
      CHECK(nbd_get_errno() == EIO);
      REQUIRE(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == 0);
      CHECK(buf == writes[0]);
    }
  }

  TEST_CASE("FLUSH and small FUA writes that sync a local journal run on the reader thread; others on a worker") {
    for (const bool local : {true, false}) {
      CAPTURE(local);
      ServerFixture f;
      f.disk->local_flush = local;
      NbdHandle h = f.connect("disk");
      REQUIRE(h);
      std::vector<std::byte> small(4096), big(128 * 1024);
      // Plain writes always run on the reader: the thread to compare with.
      REQUIRE(nbd_pwrite(h.get(), small.data(), small.size(), 0, 0) == 0);
      REQUIRE(nbd_flush(h.get(), 0) == 0);
      auto t = f.disk->last_threads();
      CHECK((t.flush == t.write) == local);
      REQUIRE(nbd_pwrite(h.get(), small.data(), small.size(), 0, LIBNBD_CMD_FLAG_FUA) == 0);
      t = f.disk->last_threads();
      CHECK((t.fua_write == t.write) == local);
      // A big FUA write could go to storage directly: always a worker's.
      REQUIRE(nbd_pwrite(h.get(), big.data(), big.size(), 0, LIBNBD_CMD_FLAG_FUA) == 0);
      t = f.disk->last_threads();
      CHECK(t.fua_write != t.write);
      CHECK(f.disk->flushes == 1);
      CHECK(f.disk->fua_count == 2);
    }
  }

  TEST_CASE("replies the reader holds go out before a FLUSH it runs waits for its sync") {
    // The reader is held in a 64 KiB write while a small READ (served from
    // cache, its reply held) and a FLUSH arrive; the FLUSH then waits, on the
    // reader, until the client has the READ's answer (or 5 s pass).
    ServerFixture f;
    f.disk->local_flush = true;
    f.disk->cached_reads_every = 1;
    std::atomic<bool> read_answered{false}, flush_waited_out{false};
    f.disk->on_flush = [&] {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!read_answered.load()) {
        if (std::chrono::steady_clock::now() > deadline) {
          flush_waited_out = true;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    };
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    auto data = pattern(64 * 1024, 7);
    f.disk->close_gate(/*min_bytes=*/64 * 1024);
    REQUIRE(nbd_aio_pwrite(h.get(), data.data(), data.size(), 0, NBD_NULL_COMPLETION, 0) > 0);
    for (int i = 0; i < 400 && f.disk->waiting_at_gate() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(f.disk->waiting_at_gate() == 1);
    std::vector<std::byte> buf(4096);
    const int64_t read = nbd_aio_pread(h.get(), buf.data(), buf.size(), 0, NBD_NULL_COMPLETION, 0);
    REQUIRE(read > 0);
    const int64_t flush = nbd_aio_flush(h.get(), NBD_NULL_COMPLETION, 0);
    REQUIRE(flush > 0);
    f.disk->open_gate();
    while (nbd_aio_command_completed(h.get(), read) == 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
    read_answered = true;
    while (nbd_aio_command_completed(h.get(), flush) == 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
    CHECK_FALSE(flush_waited_out.load());
    CHECK(std::memcmp(buf.data(), data.data(), buf.size()) == 0);
    CHECK(f.disk->cached_reads_served == 1);
  }

  TEST_CASE("replies may overtake: a fast FLUSH answers before a slow READ") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    std::vector<std::byte> buf(4096);
    // Data, not a hole: a structured READ of a hole never calls the device.
    REQUIRE(nbd_pwrite(h.get(), buf.data(), buf.size(), 0, 0) == 0);
    f.disk->set_delay(std::chrono::milliseconds(300));
    int64_t slow = nbd_aio_pread(h.get(), buf.data(), buf.size(), 0, NBD_NULL_COMPLETION, 0);
    REQUIRE(slow > 0);
    int64_t fast = nbd_aio_flush(h.get(), NBD_NULL_COMPLETION, 0);
    REQUIRE(fast > 0);
    while (nbd_aio_command_completed(h.get(), fast) == 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
    CHECK(nbd_aio_command_completed(h.get(), slow) == 0);  // still running
    while (nbd_aio_command_completed(h.get(), slow) == 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
  }

  TEST_CASE("pipelined writes and reads from several threads and connections stay correct") {
    ServerFixture f;
    constexpr int kThreads = 4, kOps = 50;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        NbdHandle h = f.connect("disk", t % 2 == 0);
        if (!h) {
          ++failures;
          return;
        }
        // Each thread owns a 256 KiB region, so the final content is known.
        const uint64_t base = uint64_t(t) * 256 * 1024;
        std::vector<std::vector<std::byte>> writes;
        for (int i = 0; i < kOps; ++i) writes.push_back(pattern(4096, uint8_t(t * 50 + i)));
        for (int i = 0; i < kOps; ++i) {
          if (nbd_aio_pwrite(h.get(), writes[i].data(), 4096, base + (i % 64) * 4096, NBD_NULL_COMPLETION, 0) < 0)
            ++failures;
        }
        while (nbd_aio_in_flight(h.get()) > 0) nbd_poll(h.get(), -1);
        for (int i = 0; i < kOps; ++i) {
          std::vector<std::byte> back(4096);
          if (nbd_pread(h.get(), back.data(), 4096, base + (i % 64) * 4096, 0) != 0 || back != writes[i]) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
  }

  TEST_CASE("back-pressure: in-flight bytes stay bounded while the device is slow") {
    ServerOptions o = ServerFixture::default_options();
    o.workers_per_connection = 2;
    o.max_inflight_bytes = 256 * 1024;
    ServerFixture f(o);
    f.disk->set_delay(std::chrono::milliseconds(20));
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    // 64 x 128 KiB = 8 MiB queued by the client; the server must take them in
    // small portions and still answer every one.
    constexpr int kRequests = 64;
    auto data = pattern(128 * 1024, 3);
    for (int i = 0; i < kRequests; ++i) {
      REQUIRE(nbd_aio_pwrite(h.get(), data.data(), data.size(), uint64_t(i % 32) * data.size(), NBD_NULL_COMPLETION,
                             0) > 0);
    }
    while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), -1) != -1);
    CHECK(f.server->stats().writes == kRequests);
    std::vector<std::byte> back(data.size());
    REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 0, 0) == 0);
    CHECK(back == data);
  }

  TEST_CASE("stop() answers requests already in flight before closing") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    std::vector<std::byte> buf(4096);
    REQUIRE(nbd_pwrite(h.get(), buf.data(), buf.size(), 0, 0) == 0);
    f.disk->set_delay(std::chrono::milliseconds(200));
    int64_t cookie = nbd_aio_pread(h.get(), buf.data(), buf.size(), 0, NBD_NULL_COMPLETION, 0);
    REQUIRE(cookie > 0);
    // Let the request reach the server, then stop it in another thread while
    // the client keeps polling for the reply.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::thread stopper([&] { f.server->stop(); });
    int done = 0;
    while ((done = nbd_aio_command_completed(h.get(), cookie)) == 0) {
      if (nbd_poll(h.get(), 1000) == -1) break;
    }
    stopper.join();
    CHECK(done == 1);
  }
}

}  // namespace portalbd::nbd
