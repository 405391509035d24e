// Concurrent segment uploads (VolumeOptions::upload_concurrency; the rules
// U1-U6 in volume.h): several PUTs run at once, commits still follow sequence
// order, and a failed PUT holds back every later commit without losing data.
// What a crash mid-window leaves in storage: volume_replay_test.cc.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "src/engine/volume.h"
#include "src/store/fault_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/gate_store.h"
#include "tests/unit/numbered_segments.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace std::chrono;

namespace {

using portalbd::testing::GateStore;
using portalbd::testing::TempDir;

using portalbd::testing::check_numbered_segment;
using portalbd::testing::numbered_pattern;
using portalbd::testing::write_numbered_segments;
constexpr uint64_t kSegmentBytes = portalbd::testing::kNumberedSegmentBytes;

VolumeOptions upload_options(const std::string& dir, uint32_t concurrency) {
  VolumeOptions o;
  o.size_bytes = 16ull << 20;
  o.segment_bytes = kSegmentBytes;  // every test write below seals one buffer
  o.write_buffer_bytes = 8 << 20;
  o.flush_interval_ms = 0;
  o.upload_concurrency = concurrency;
  o.index_path = dir + "/index.sqlite";
  return o;
}

// A volume whose segment PUTs wait at a GateStore over a MemoryStore.
// Tests bind its members: auto& [dir, mem, gate, vol] = fixture.
struct GatedVolume {
  explicit GatedVolume(uint32_t concurrency) {
    auto v = Volume::Open(gate, upload_options(dir.path, concurrency));
    REQUIRE_MESSAGE(v.ok(), v.status().ToString());
    vol = *v;
  }
  // A test that stopped at a failed REQUIRE may leave PUTs held: let them
  // through, or the volume's flusher would never finish.
  ~GatedVolume() { gate->open(); }
  TempDir dir;
  std::shared_ptr<MemoryStore> mem = std::make_shared<MemoryStore>();
  std::shared_ptr<GateStore> gate = std::make_shared<GateStore>(mem);
  std::shared_ptr<Volume> vol;
};

// What storage holds at this instant: the objects a kill -9 would leave.
std::shared_ptr<MemoryStore> crash_copy(MemoryStore& store) {
  auto copy = std::make_shared<MemoryStore>();
  std::vector<ObjectInfo> all;
  REQUIRE(store.list("", &all).ok());
  for (const auto& obj : all) {
    std::vector<std::byte> raw;
    REQUIRE(store.get(obj.key, &raw).ok());
    REQUIRE(copy->put(obj.key, raw).ok());
  }
  return copy;
}

// What a kill -9 mid-PUT leaves on a store without atomic PUTs.
void tear(MemoryStore& store, uint64_t seq) {
  std::vector<std::byte> raw;
  REQUIRE(store.get(segment_key(seq), &raw).ok());
  raw.resize(raw.size() / 2);
  REQUIRE(store.put(segment_key(seq), raw).ok());
}

std::shared_ptr<Volume> open_fresh(std::shared_ptr<ObjectStore> store, const std::string& index_path) {
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(index_path + suffix);
  VolumeOptions o;
  o.flush_interval_ms = 0;
  o.index_path = index_path;
  auto v = Volume::Open(std::move(store), o);
  REQUIRE_MESSAGE(v.ok(), v.status().ToString());
  return *v;
}

}  // namespace

TEST_SUITE("engine.upload") {
  TEST_CASE("upload_concurrency PUTs run at once, and commits still follow sequence order") {
    GatedVolume fixture(4);
    auto& [dir, mem, gate, volume] = fixture;
    Volume& vol = *volume;

    write_numbered_segments(vol, 1, 6, false);  // six sealed buffers; the flusher uploads them
    REQUIRE(gate->wait_until([](auto& held, auto&) { return held.size() == 4; }));
    std::this_thread::sleep_for(milliseconds(100));
    CHECK(gate->held() == 4);  // the window: segments 1-4, not 5 or 6
    CHECK(gate->puts_started() == 4);

    // 2, 3 and 4 reach storage; 1 does not: nothing may commit.
    for (uint64_t seq : {4, 3, 2}) gate->release(segment_key(seq));
    REQUIRE(gate->wait_until([](auto&, auto& stored) { return stored.size() == 3; }));
    std::this_thread::sleep_for(milliseconds(100));
    CHECK(vol.stats().segments == 0);
    CHECK(gate->puts_started() == 4);                             // the window does not move past an uncommitted head
    for (int i = 1; i <= 6; ++i) check_numbered_segment(vol, i);  // every buffer stays readable
    {
      // A crash now rebuilds none of 2-4: each was sealed behind the one
      // before it, and 1 never arrived (a prefix of the writes: the empty one).
      auto rebuilt = open_fresh(crash_copy(*mem), dir.path + "/crash.sqlite");
      for (int i = 1; i <= 6; ++i) check_numbered_segment(*rebuilt, i, false);
      CHECK(rebuilt->stats().replayed_segments == 0);
    }

    // 1 lands: 1-4 commit, and the window moves on to 5 and 6.
    gate->release(segment_key(1));
    REQUIRE(gate->wait_until([](auto& held, auto&) { return held.size() == 2; }));
    const auto deadline = steady_clock::now() + seconds(10);
    while (vol.stats().segments < 4 && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(5));
    CHECK(vol.stats().segments == 4);
    CHECK(gate->most_held() == 4);

    gate->open();
    REQUIRE(vol.flush().ok());
    CHECK(vol.stats().segments == 6);
    CHECK(vol.stats().dirty_bytes == 0);
    REQUIRE(vol.close().ok());
    auto rebuilt = open_fresh(mem, dir.path + "/rebuilt.sqlite");
    for (int i = 1; i <= 6; ++i) check_numbered_segment(*rebuilt, i);
  }

  TEST_CASE("upload_concurrency = 1 uploads one segment at a time") {
    GatedVolume fixture(1);
    auto& [dir, mem, gate, vol] = fixture;
    write_numbered_segments(*vol, 1, 3, false);
    REQUIRE(gate->wait_until([](auto& held, auto&) { return held.size() == 1; }));
    std::this_thread::sleep_for(milliseconds(100));
    CHECK(gate->puts_started() == 1);
    gate->open();
    REQUIRE(vol->flush().ok());
    CHECK(gate->most_held() == 1);
    CHECK(vol->stats().segments == 3);
  }

  TEST_CASE("a failed PUT holds back every later commit; the retry commits all without PUTting them again") {
    TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    auto faults = std::make_shared<FaultStore>(mem);
    FaultStore::Rule rule;
    rule.ops = (1u << FaultStore::kPut) | (1u << FaultStore::kPutIfAbsent);
    rule.key_prefix = segment_key(2);
    rule.status = Status::IOError("injected: PUT of segment 2 fails");
    faults->add_rule(rule);
    auto v = Volume::Open(faults, upload_options(dir.path, 4));
    REQUIRE(v.ok());
    Volume& vol = **v;

    write_numbered_segments(vol, 1, 5, false);
    Status st = vol.flush();
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find(segment_key(2)) != std::string::npos);
    CHECK(vol.stats().segments == 1);  // nothing past segment 1
    CHECK(vol.stats().dirty_bytes == 4 * kSegmentBytes);
    for (uint64_t seq : {3, 4, 5}) CHECK(mem->head(segment_key(seq)).ok());  // PUT while 2 failed
    CHECK(mem->head(segment_key(2)).status().is(Status::Code::kNotFound));
    for (int i = 1; i <= 5; ++i) check_numbered_segment(vol, i);

    faults->clear_faults();
    REQUIRE(vol.flush().ok());
    CHECK(vol.stats().segments == 5);
    CHECK(vol.stats().dirty_bytes == 0);
    // Segment 2 went up again (the flusher may have retried it too), 3-5
    // did not: they were remembered as stored.
    const auto trace = faults->trace();
    auto puts_of = [&](uint64_t seq) {  // segments are created with put_if_absent on memory://
      return std::count(trace.begin(), trace.end(), "put_if_absent " + segment_key(seq));
    };
    CHECK(puts_of(2) >= 2);
    for (uint64_t seq : {1, 3, 4, 5}) CHECK_MESSAGE(puts_of(seq) == 1, "segment " << seq);
    for (int i = 1; i <= 5; ++i) check_numbered_segment(vol, i);

    REQUIRE(vol.close().ok());
    auto rebuilt = open_fresh(mem, dir.path + "/rebuilt.sqlite");
    for (int i = 1; i <= 5; ++i) check_numbered_segment(*rebuilt, i);
  }

  TEST_CASE("checkpoints find a quiet moment while a writer keeps filling segments") {
    // A checkpoint (and every GC rewrite) needs a moment with no sealed buffer
    // pending. Before seals were held back while it waits, a writer sealing
    // a buffer per PUT kept that moment from coming and the call gave up
    // with Busy after 100 upload rounds.
    GatedVolume fixture(1);
    auto& [dir, mem, gate, vol] = fixture;
    gate->open();
    gate->set_put_delay(milliseconds(5));
    std::atomic<bool> stop{false};
    std::thread writer([&, &vol = vol] {
      std::vector<std::byte> block(64 << 10, std::byte{7});
      for (uint64_t i = 0; !stop; ++i) {
        if (!vol->write((i % 64) * block.size(), block, false).ok()) return;
      }
    });
    auto checkpoints = std::async(std::launch::async, [&, &vol = vol] {
      std::vector<Status> out;
      for (int i = 0; i < 5; ++i) out.push_back(vol->checkpoint().status());
      return out;
    });
    const bool done = checkpoints.wait_for(seconds(60)) == std::future_status::ready;
    stop = true;  // a writer that never pauses is what a hang would wait for
    writer.join();
    CHECK_MESSAGE(done, "checkpoints still waiting for a quiet moment after 60 s");
    for (const Status& st : checkpoints.get()) CHECK_MESSAGE(st.ok(), st.ToString());
    REQUIRE(vol->close().ok());
  }

  TEST_CASE("FLUSHes queued behind an upload that covers them return without one of their own") {
    GatedVolume fixture(1);
    auto& [dir, mem, gate, volume] = fixture;
    Volume& vol = *volume;
    const std::vector<std::byte> a(4096, std::byte{0xa1}), b(4096, std::byte{0xb2}), c(4096, std::byte{0xc3});
    auto flush_async = [&] { return std::async(std::launch::async, [&] { return vol.flush(); }); };

    REQUIRE(vol.write(0, a, false).ok());
    auto first = flush_async();  // seals {a}; its PUT waits at the gate
    REQUIRE(gate->wait_until([](auto& held, auto&) { return held.count(segment_key(1)) > 0; }));
    REQUIRE(vol.write(4096, b, false).ok());
    auto second = flush_async(), third = flush_async();  // both cover {b}; both queue
    const auto deadline = steady_clock::now() + seconds(10);
    while (vol.stats().flushes < 3 && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(1));
    REQUIRE(vol.stats().flushes == 3);

    // The first returns; one of the queued two seals {b} and uploads it.
    gate->release(segment_key(1));
    REQUIRE(gate->wait_until([](auto& held, auto&) { return held.count(segment_key(2)) > 0; }));
    CHECK(first.get().ok());
    // A write neither queued FLUSH covers: the one left need not seal it.
    REQUIRE(vol.write(8192, c, false).ok());
    gate->release(segment_key(2));
    const bool returned = second.wait_for(seconds(10)) == std::future_status::ready &&
                          third.wait_for(seconds(10)) == std::future_status::ready;
    CHECK_MESSAGE(returned, "a FLUSH whose writes were committed still waited for an upload of its own");
    gate->open();
    CHECK(second.get().ok());
    CHECK(third.get().ok());
    CHECK(gate->puts_started() == 2);
    CHECK(vol.stats().flushes_grouped == 1);
    CHECK(vol.stats().dirty_bytes == c.size());  // {c} waits for a FLUSH that covers it

    REQUIRE(vol.flush().ok());  // covers {c}: an upload of its own
    CHECK(gate->puts_started() == 3);
    CHECK(vol.stats().dirty_bytes == 0);
    REQUIRE(vol.close().ok());
    auto rebuilt = open_fresh(mem, dir.path + "/rebuilt.sqlite");
    std::vector<std::byte> got(3 * 4096);
    REQUIRE(rebuilt->read(0, got).ok());
    CHECK(std::memcmp(got.data(), a.data(), 4096) == 0);
    CHECK(std::memcmp(got.data() + 4096, b.data(), 4096) == 0);
    CHECK(std::memcmp(got.data() + 8192, c.data(), 4096) == 0);
  }

  TEST_CASE("every FLUSH that returns leaves its own writes in storage, however FLUSHes are grouped") {
    // Writers that each write, flush, and then look in a copy of storage (what
    // a kill -9 would leave) for what they wrote, while their FLUSHes queue
    // behind each other's 2 ms PUTs and share uploads.
    GatedVolume fixture(1);
    auto& [dir_binding, mem_binding, gate, volume] = fixture;
    // Lambdas below capture these by name (clang 14 cannot capture bindings).
    auto& dir = dir_binding;
    auto& mem = mem_binding;
    Volume& vol = *volume;
    gate->open();
    gate->set_put_delay(milliseconds(2));
    constexpr int kWriters = 4, kRounds = 8;
    std::mutex check_mu;  // one rebuild at a time; each gets its own index file
    int rebuilds = 0;
    std::vector<std::string> missing;
    std::vector<std::thread> writers;
    for (int t = 0; t < kWriters; ++t) {
      writers.emplace_back([&, t] {
        for (int r = 0; r < kRounds; ++r) {
          const uint64_t offset = (uint64_t(t) * kRounds + r) * 4096;
          const std::vector<std::byte> block(4096, std::byte(uint8_t(1 + t * kRounds + r)));
          if (!vol.write(offset, block, false).ok() || !vol.flush().ok()) {
            std::lock_guard lock(check_mu);
            missing.push_back("write or flush failed");
            return;
          }
          std::lock_guard lock(check_mu);
          auto rebuilt = open_fresh(crash_copy(*mem), dir.path + "/crash" + std::to_string(rebuilds++) + ".sqlite");
          std::vector<std::byte> got(4096);
          if (!rebuilt->read(offset, got).ok() || got != block) {
            missing.push_back("writer " + std::to_string(t) + " round " + std::to_string(r));
          }
        }
      });
    }
    for (auto& w : writers) w.join();
    CHECK_MESSAGE(missing.empty(),
                  "not in storage after its FLUSH returned: " << (missing.empty() ? "" : missing.front()));
    CHECK(vol.stats().flushes == kWriters * kRounds);
    MESSAGE("FLUSHes answered by another's upload: " << vol.stats().flushes_grouped << " of " << kWriters * kRounds);
    REQUIRE(vol.close().ok());
  }

  TEST_CASE("a crash with several uploads in flight rebuilds a prefix of the writes") {
    GatedVolume fixture(4);
    auto& [dir, mem, gate, volume] = fixture;
    Volume& vol = *volume;
    write_numbered_segments(vol, 1, 5, false);
    REQUIRE(gate->wait_until([](auto& held, auto&) { return held.size() == 4; }));

    // 1, 3 and 4 reach storage, 2 does not: 3 and 4 were sealed behind it.
    for (uint64_t seq : {1, 3, 4}) gate->release(segment_key(seq));
    REQUIRE(gate->wait_until([](auto&, auto& stored) { return stored.size() == 3; }));
    auto hole = crash_copy(*mem);
    auto rebuilt = open_fresh(hole, dir.path + "/hole.sqlite");
    check_numbered_segment(*rebuilt, 1);
    for (int i = 2; i <= 5; ++i) check_numbered_segment(*rebuilt, i, false);
    CHECK(rebuilt->stats().replayed_segments == 1);
    for (uint64_t seq : {3, 4}) CHECK(hole->head(segment_key(seq)).status().is(Status::Code::kNotFound));  // dropped
    // New segments continue after the highest sequence seen, and stay.
    REQUIRE(rebuilt->write(4096, numbered_pattern(4096, 9), true).ok());
    REQUIRE(rebuilt->close().ok());
    auto again = open_fresh(hole, dir.path + "/again.sqlite");
    std::vector<std::byte> got(4096);
    REQUIRE(again->read(4096, got).ok());
    CHECK(got == numbered_pattern(4096, 9));
    for (int i = 2; i <= 5; ++i) check_numbered_segment(*again, i, false);

    // 2 arrives torn: the same prefix.
    gate->release(segment_key(2));
    REQUIRE(gate->wait_until([](auto&, auto& stored) { return stored.size() == 4; }));
    auto torn = crash_copy(*mem);
    tear(*torn, 2);
    auto from_torn = open_fresh(torn, dir.path + "/torn.sqlite");
    check_numbered_segment(*from_torn, 1);
    for (int i = 2; i <= 5; ++i) check_numbered_segment(*from_torn, i, false);

    // Whole: everything PUT so far (1-4) and nothing else.
    auto whole = open_fresh(crash_copy(*mem), dir.path + "/whole.sqlite");
    for (int i = 1; i <= 4; ++i) check_numbered_segment(*whole, i);
    check_numbered_segment(*whole, 5, false);

    gate->open();
    REQUIRE(vol.close().ok());
  }

  TEST_CASE("an index that lags a GC pass keeps segments whose predecessor was garbage-collected") {
    // An index that lags storage (its last commits lost in a crash) while GC
    // has since deleted segments that others were sealed behind: open()
    // rebuilds it from the checkpoint GC wrote before deleting (issue 18,
    // volume_reconcile.cc), which holds them as committed, not lost.
    TempDir dir;
    const std::string index = dir.path + "/index.sqlite";
    auto mem = std::make_shared<MemoryStore>();
    auto gate = std::make_shared<GateStore>(mem);
    {
      auto v = Volume::Open(gate, upload_options(dir.path, 4));
      REQUIRE(v.ok());
      REQUIRE((*v)->close().ok());
    }
    std::filesystem::copy_file(index, dir.path + "/stale.sqlite");
    {
      auto v = Volume::Open(gate, upload_options(dir.path, 4));
      REQUIRE(v.ok());
      Volume& vol = **v;
      write_numbered_segments(vol, 1, 2, false);  // 2 sealed behind 1
      REQUIRE(gate->wait_until([](auto& held, auto&) { return held.size() == 2; }));
      gate->open();
      REQUIRE(vol.flush().ok());
      // Segment 1's blocks overwritten: it becomes garbage and is deleted.
      REQUIRE(vol.write(0, numbered_pattern(kSegmentBytes, 7), true).ok());
      GcOptions gc;
      gc.grace_ms = 0;
      REQUIRE(vol.gc(gc).ok());
      REQUIRE(vol.gc(gc).ok());
      REQUIRE(mem->head(segment_key(1)).status().is(Status::Code::kNotFound));
      REQUIRE(mem->head(segment_key(2)).ok());
      REQUIRE(vol.close().ok());
    }
    for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(index + suffix);
    std::filesystem::copy_file(dir.path + "/stale.sqlite", index);
    auto v = Volume::Open(mem, upload_options(dir.path, 4));
    REQUIRE_MESSAGE(v.ok(), v.status().ToString());
    CHECK((*v)->stats().last_checkpoint_seq > 0);  // rebuilt from storage's checkpoint, not replayed over
    check_numbered_segment(**v, 2);
    std::vector<std::byte> got(kSegmentBytes);
    REQUIRE((*v)->read(0, got).ok());
    CHECK(got == numbered_pattern(kSegmentBytes, 7));
  }
}
