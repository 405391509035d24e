// FrameFetcher (frame_fetcher.h): fetches run side by side, a frame is fetched
// once however many want it, read-ahead stays within its budget and its share
// of the threads, errors reach the reader and are not remembered, and the
// disk cache is read before the store. The store is a MemoryStore behind a
// FaultStore, whose hang() holds GETs so the tests can count them in flight.
#include "src/engine/frame_fetcher.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "src/store/fault_store.h"
#include "src/store/memory_store.h"
#include "src/util/crc32c.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

constexpr uint32_t kFrame = 4096;
constexpr uint64_t kSeq = 7;

struct Fixture {
  std::shared_ptr<MemoryStore> mem = std::make_shared<MemoryStore>();
  std::shared_ptr<FaultStore> store = std::make_shared<FaultStore>(mem);
  FrameCache cache{64ull << 20};
  std::vector<std::byte> object;     // segment kSeq: 64 frames back to back
  std::atomic<uint64_t> decodes{0};  // bumped by the fetcher's threads

  Fixture() {
    object.resize(64 * kFrame);
    for (size_t i = 0; i < object.size(); ++i) object[i] = std::byte(static_cast<uint8_t>(i * 7 + i / kFrame));
    REQUIRE(mem->put(segment_key(kSeq), object).ok());
  }
  FrameRef ref(uint64_t i) const {
    FrameRef r;
    r.offset = i * kFrame;
    r.stored_len = kFrame;
    r.raw_len = kFrame;
    r.crc = crc32c(std::span<const std::byte>(object).subspan(r.offset, kFrame));
    return r;
  }
  FrameWant want(uint64_t i) const { return {kSeq, ref(i)}; }
  // Checks the crc, "decodes" by copying, caches: what Volume::decode_and_cache does.
  FrameFetcher::Decoder decoder() {
    return [this](uint64_t seq, const FrameRef& r, std::span<const std::byte> stored,
                  std::shared_ptr<const void>) -> Result<FrameCache::Frame> {
      ++decodes;
      if (stored.size() != r.stored_len || crc32c(stored) != r.crc) return Status::Corruption("bad frame");
      auto buf = std::make_shared<std::vector<std::byte>>(stored.begin(), stored.end());
      FrameCache::Frame f{buf, std::span<const std::byte>(*buf)};
      cache.put(seq, r.offset, f);
      return f;
    };
  }
  std::unique_ptr<FrameFetcher> fetcher(FrameFetcherOptions o = {}, DiskFrameCache* disk = nullptr) {
    return std::make_unique<FrameFetcher>(store.get(), &cache, disk, decoder(), o);
  }
  bool holds(const FrameBatch& batch, uint64_t i) const {
    auto it = batch.find({kSeq, i * kFrame});
    if (it == batch.end()) return false;
    return std::equal(it->second.bytes.begin(), it->second.bytes.end(), object.begin() + i * kFrame);
  }
};

// Polls `cond` for up to 10 s.
template <typename F>
bool eventually(F cond) {
  for (int i = 0; i < 1000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

}  // namespace

TEST_SUITE("engine.frame_fetcher") {
  TEST_CASE("a reader's frames stored apart are fetched side by side") {
    Fixture f;
    auto fetcher = f.fetcher();
    std::vector<FrameWant> wants;
    for (uint64_t i = 0; i < 16; i += 2) wants.push_back(f.want(i));  // 8 runs of one frame, gaps between
    f.store->hang(1u << FaultStore::kGetRange);
    FrameBatch batch;
    Status st;
    std::thread reader([&] { st = fetcher->fetch(wants, &batch); });
    CHECK(eventually([&] { return f.store->hanging() == 8; }));
    f.store->release();
    reader.join();
    REQUIRE(st.ok());
    for (uint64_t i = 0; i < 16; i += 2) CHECK(f.holds(batch, i));
    CHECK(fetcher->stats().gets == 8);
  }

  TEST_CASE("on a local store a reader fetches its first run itself, the others in the pool") {
    Fixture f;
    FrameFetcherOptions o;
    o.local_store = true;
    auto fetcher = f.fetcher(o);
    // One run: the reader's own thread, no pool thread started.
    FrameBatch one;
    REQUIRE(fetcher->fetch({f.want(3), f.want(4)}, &one).ok());
    CHECK(f.holds(one, 3));
    CHECK(f.holds(one, 4));
    CHECK(fetcher->stats().threads == 0);
    CHECK(fetcher->stats().gets == 1);
    // Four runs: the reader takes one, three go to the pool, side by side.
    std::vector<FrameWant> wants;
    for (uint64_t i = 10; i < 18; i += 2) wants.push_back(f.want(i));
    f.store->hang(1u << FaultStore::kGetRange);
    FrameBatch batch;
    Status st;
    std::thread reader([&] { st = fetcher->fetch(wants, &batch); });
    CHECK(eventually([&] { return f.store->hanging() == 4; }));
    CHECK(fetcher->stats().threads == 3);
    f.store->release();
    reader.join();
    REQUIRE(st.ok());
    for (uint64_t i = 10; i < 18; i += 2) CHECK(f.holds(batch, i));
    CHECK(fetcher->stats().in_flight == 0);
    // A second reader of a frame the first is fetching inline waits for it.
    f.store->hang(1u << FaultStore::kGetRange);
    FrameBatch a, b;
    Status sa, sb;
    std::thread ra([&] { sa = fetcher->fetch({f.want(30)}, &a); });
    CHECK(eventually([&] { return f.store->hanging() == 1; }));
    std::thread rb([&] { sb = fetcher->fetch({f.want(30)}, &b); });
    CHECK(eventually([&] { return fetcher->stats().joined == 1; }));
    f.store->release();
    ra.join();
    rb.join();
    REQUIRE(sa.ok());
    REQUIRE(sb.ok());
    CHECK(f.holds(a, 30));
    CHECK(f.holds(b, 30));
    CHECK(f.store->calls(FaultStore::kGetRange) == 6);
  }

  TEST_CASE("frames back to back are one GET per run_bytes") {
    Fixture f;
    FrameFetcherOptions o;
    o.run_bytes = 4 * kFrame;
    auto fetcher = f.fetcher(o);
    std::vector<FrameWant> wants;
    for (uint64_t i = 0; i < 10; ++i) wants.push_back(f.want(i));
    std::vector<FrameWant> twice = wants;  // several pieces of one read in the same frame
    twice.insert(twice.end(), wants.begin(), wants.end());
    FrameBatch batch;
    REQUIRE(fetcher->fetch(twice, &batch).ok());
    CHECK(f.store->calls(FaultStore::kGetRange) == 3);  // 4 + 4 + 2 frames
    CHECK(fetcher->stats().joined == 0);
    for (uint64_t i = 0; i < 10; ++i) CHECK(f.holds(batch, i));
    // Now cached: no GET at all.
    FrameBatch again;
    REQUIRE(fetcher->fetch(wants, &again).ok());
    CHECK(f.store->calls(FaultStore::kGetRange) == 3);
    CHECK(again.size() == 10);
  }

  TEST_CASE("read-ahead on a remote store is several GETs at once, on a local store runs of run_bytes") {
    for (const bool local : {false, true}) {
      CAPTURE(local);
      Fixture f;
      FrameFetcherOptions o;
      o.run_bytes = 16 * kFrame;
      o.ahead_min_run_bytes = 2 * kFrame;
      o.prefetch_budget_bytes = 64 * kFrame;
      o.local_store = local;
      auto fetcher = f.fetcher(o);
      std::vector<FrameWant> ahead;
      for (uint64_t i = 0; i < 32; ++i) ahead.push_back(f.want(i));  // 32 frames back to back
      fetcher->prefetch(ahead);
      REQUIRE(eventually([&] { return fetcher->stats().prefetched == 32; }));
      // Remote: 32 / kAheadSplit = 4 frames a GET. Local: 16 frames a GET.
      CHECK(f.store->calls(FaultStore::kGetRange) == (local ? 2 : 8));
      // A small range is not cut below ahead_min_run_bytes: 4 frames, 2 GETs.
      std::vector<FrameWant> small;
      for (uint64_t i = 40; i < 44; ++i) small.push_back(f.want(i));
      fetcher->prefetch(small);
      REQUIRE(eventually([&] { return fetcher->stats().prefetched == 36; }));
      CHECK(f.store->calls(FaultStore::kGetRange) == (local ? 3 : 10));
      for (uint64_t i = 0; i < 32; ++i) CHECK(f.cache.get(kSeq, i * kFrame));
    }
  }

  TEST_CASE("a frame two readers want is fetched once") {
    Fixture f;
    auto fetcher = f.fetcher();
    f.store->hang(1u << FaultStore::kGetRange);
    FrameBatch a, b;
    Status sa, sb;
    std::thread first([&] { sa = fetcher->fetch({f.want(3)}, &a); });
    REQUIRE(eventually([&] { return f.store->hanging() == 1; }));
    std::thread second([&] { sb = fetcher->fetch({f.want(3), f.want(4)}, &b); });
    REQUIRE(eventually([&] { return fetcher->stats().joined == 1 && f.store->hanging() == 2; }));
    f.store->release();
    first.join();
    second.join();
    REQUIRE(sa.ok());
    REQUIRE(sb.ok());
    CHECK(f.holds(a, 3));
    CHECK(f.holds(b, 3));
    CHECK(f.holds(b, 4));
    CHECK(f.store->calls(FaultStore::kGetRange) == 2);  // frame 3 once, frame 4 once
  }

  TEST_CASE("read-ahead stays within its budget and leaves a quarter of the threads to readers") {
    Fixture f;
    FrameFetcherOptions o;
    o.concurrency = 4;
    o.prefetch_budget_bytes = 5 * kFrame;
    auto fetcher = f.fetcher(o);
    f.store->hang(1u << FaultStore::kGetRange);
    std::vector<FrameWant> ahead;
    for (uint64_t i = 0; i < 20; i += 2) ahead.push_back(f.want(i));  // 10 separate frames
    fetcher->prefetch(ahead);
    CHECK(fetcher->stats().prefetch_dropped == 5);
    REQUIRE(eventually([&] { return f.store->hanging() == 3; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(f.store->hanging() == 3);  // the fourth thread is the readers'
    FrameBatch batch;
    Status st;
    std::thread reader([&] { st = fetcher->fetch({f.want(41)}, &batch); });
    CHECK(eventually([&] { return f.store->hanging() == 4; }));
    f.store->release();
    reader.join();
    REQUIRE(st.ok());
    CHECK(f.holds(batch, 41));
    CHECK(eventually([&] { return fetcher->stats().prefetched == 5; }));
    for (uint64_t i = 0; i < 10; i += 2) CHECK(f.cache.get(kSeq, i * kFrame));
  }

  TEST_CASE("a reader that needs a queued read-ahead frame moves its job ahead") {
    Fixture f;
    FrameFetcherOptions o;
    o.concurrency = 4;  // read-ahead runs at most 3 jobs
    auto fetcher = f.fetcher(o);
    f.store->hang(1u << FaultStore::kGetRange);
    fetcher->prefetch({f.want(0), f.want(2), f.want(4), f.want(6), f.want(8)});
    REQUIRE(eventually([&] { return f.store->hanging() == 3; }));
    FrameBatch batch;
    Status st;
    // The jobs for frames 6 and 8 are queued; the reader's wait moves frame 8's to the front.
    std::thread reader([&] { st = fetcher->fetch({f.want(8)}, &batch); });
    CHECK(eventually([&] { return f.store->hanging() == 4; }));
    CHECK(fetcher->stats().joined == 1);
    f.store->release();
    reader.join();
    REQUIRE(st.ok());
    CHECK(f.holds(batch, 8));
    CHECK(f.store->calls(FaultStore::kGetRange) <= 5);
  }

  TEST_CASE("a failed GET reaches the reader, and the next read tries again") {
    Fixture f;
    auto fetcher = f.fetcher();
    FaultStore::Rule rule;
    rule.ops = 1u << FaultStore::kGetRange;
    rule.status = Status::IOError("connection reset");
    rule.times = 1;
    f.store->add_rule(rule);
    FrameBatch batch;
    Status st = fetcher->fetch({f.want(1)}, &batch);
    CHECK(st.code() == Status::Code::kIOError);
    CHECK(st.message().find(segment_key(kSeq)) != std::string::npos);
    REQUIRE(fetcher->fetch({f.want(1)}, &batch).ok());
    CHECK(f.holds(batch, 1));
  }

  TEST_CASE("a store that never answers fails a read at read_timeout_ms; the fetch lands later") {
    Fixture f;
    FrameFetcherOptions o;
    o.read_timeout_ms = 200;
    auto fetcher = f.fetcher(o);
    f.cache.put(kSeq, 5 * kFrame, {std::make_shared<int>(0), {}});  // frame 5 is in memory
    f.store->hang(1u << FaultStore::kGetRange);
    FrameBatch batch;
    const auto t0 = std::chrono::steady_clock::now();
    Status st = fetcher->fetch({f.want(1), f.want(5)}, &batch);
    const auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(st.code() == Status::Code::kUnavailable);
    CHECK(st.message().find("200 ms") != std::string::npos);
    CHECK(waited >= std::chrono::milliseconds(200));
    CHECK(waited < std::chrono::seconds(5));
    CHECK(fetcher->stats().timeouts == 1);
    // What memory holds is still served while the store hangs.
    FrameBatch cached;
    CHECK(fetcher->fetch({f.want(5)}, &cached).ok());
    f.store->release();
    CHECK(
        eventually([&] { return static_cast<bool>(f.cache.get(kSeq, 1 * kFrame)); }));  // the GET finished and was kept
    FrameBatch after;
    REQUIRE(fetcher->fetch({f.want(1)}, &after).ok());
    CHECK(f.holds(after, 1));
    CHECK(f.store->calls(FaultStore::kGetRange) == 1);
  }

  TEST_CASE("a frame that fails its check is an error, and is not cached") {
    Fixture f;
    auto fetcher = f.fetcher();
    FrameWant bad = f.want(2);
    bad.ref.crc ^= 1;
    FrameBatch batch;
    CHECK(fetcher->fetch({bad}, &batch).code() == Status::Code::kCorruption);
    CHECK_FALSE(f.cache.get(kSeq, 2 * kFrame));
  }

  TEST_CASE("frames fetched once are read from the disk cache by the next fetcher") {
    Fixture f;
    testing::TempDir dir;
    auto disk = DiskFrameCache::Open({dir.path + "/cache", 64 * DiskFrameCache::kSlotBytes, "vol"});
    REQUIRE(disk.ok());
    std::vector<FrameWant> wants;
    for (uint64_t i = 0; i < 8; ++i) wants.push_back(f.want(i));
    {
      auto fetcher = f.fetcher({}, disk->get());
      FrameBatch batch;
      REQUIRE(fetcher->fetch(wants, &batch).ok());
    }
    const uint64_t gets = f.store->calls(FaultStore::kGetRange);
    FrameCache cache{64ull << 20};  // a new memory cache: as after a restart
    FrameFetcher again(f.store.get(), &cache, disk->get(), f.decoder(), {});
    FrameBatch batch;
    REQUIRE(again.fetch(wants, &batch).ok());
    CHECK(f.store->calls(FaultStore::kGetRange) == gets);
    CHECK(again.stats().disk_hits == 8);
    for (uint64_t i = 0; i < 8; ++i) CHECK(f.holds(batch, i));
    // Served from the fetched bytes or from disk: once settled, on disk.
    (*disk)->settle();
    CHECK((*disk)->stats().frames == 8);
    CHECK((*disk)->stats().inserts == 8);
  }
}
