// The writer lease on an idle volume (issue 26): renewed every ttl/4 while
// segments are written, once per idle_renew_ms (valid for idle_renew_ms +
// ttl_ms) while nothing is, so an idle volume sends storage (almost) nothing
// and its claim never lapses; a write after idling keeps its safety.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "src/engine/volume.h"
#include "src/store/fault_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kTtlMs = 400;  // the flusher ticks every 100 ms
constexpr int64_t kIdleRenewMs = 5000;

uint64_t lease_writes(const FaultStore& faults) {
  return faults.calls(FaultStore::kPut) + faults.calls(FaultStore::kPutIfAbsent);
}

}  // namespace

TEST_SUITE("engine.lease_idle") {
  TEST_CASE("an idle volume renews its lease once, for long; writing renews it every tick, for ttl") {
    testing::TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    auto faults = std::make_shared<FaultStore>(mem);
    LeaseOptions lo;
    lo.ttl_ms = kTtlMs;
    lo.idle_renew_ms = kIdleRenewMs;
    lo.host = "test-host";
    lo.pid = ::getpid();
    auto lease = WriterLease::Acquire(faults, lo);
    REQUIRE(lease.ok());
    std::shared_ptr<WriterLease> shared = std::move(*lease);
    VolumeOptions o;
    o.size_bytes = 1 << 20;
    o.flush_interval_ms = 0;
    o.index_path = dir.path + "/index.sqlite";
    o.lease = shared;
    auto v = Volume::Open(faults, o);
    REQUIRE_MESSAGE(v.ok(), v.status().ToString());
    std::vector<std::byte> block(kBlockSize, std::byte{1});
    REQUIRE((*v)->write(0, block, false).ok());
    REQUIRE((*v)->flush().ok());

    // Idle: the first ticks make the one long renewal, then nothing is
    // written to storage (the old flusher renewed every tick: ~12 PUTs).
    std::this_thread::sleep_for(300ms);
    CHECK(shared->remaining_ms() > kIdleRenewMs);
    const uint64_t before = lease_writes(*faults);
    const uint64_t calls_before = faults->calls();
    std::this_thread::sleep_for(1200ms);
    CHECK(lease_writes(*faults) == before);
    CHECK(faults->calls() == calls_before);
    CHECK(shared->remaining_ms() > kIdleRenewMs - 1500);  // still claimed, for long

    // Writing again (a segment every 20 ms, so every tick sees one): each
    // tick renews for ttl_ms only, so a writer that dies mid-work frees the
    // volume quickly.
    const auto until = std::chrono::steady_clock::now() + 600ms;
    while (std::chrono::steady_clock::now() < until) {
      REQUIRE((*v)->write(0, block, false).ok());
      REQUIRE((*v)->flush().ok());
      std::this_thread::sleep_for(20ms);
    }
    CHECK(shared->remaining_ms() <= kTtlMs);
    CHECK(lease_writes(*faults) > before);
    REQUIRE((*v)->close().ok());
  }

  TEST_CASE(
      "a volume idle for longer than the TTL is still claimed; a take-over fences it and loses nothing acknowledged") {
    testing::TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    LeaseOptions lo;
    lo.ttl_ms = kTtlMs;
    lo.idle_renew_ms = kIdleRenewMs;
    lo.host = "host-a";
    lo.pid = 1;  // not this host's pid rule: only expiry or take-over end it
    auto lease = WriterLease::Acquire(mem, lo);
    REQUIRE(lease.ok());
    VolumeOptions o;
    o.size_bytes = 1 << 20;
    o.flush_interval_ms = 0;
    o.index_path = dir.path + "/a.sqlite";
    o.lease = std::move(*lease);
    auto a = Volume::Open(mem, o);
    REQUIRE(a.ok());
    std::vector<std::byte> one(kBlockSize, std::byte{1}), two(kBlockSize, std::byte{2});
    REQUIRE((*a)->write(0, one, false).ok());
    REQUIRE((*a)->flush().ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(3 * kTtlMs));  // idle, well past the TTL

    LeaseOptions lb = lo;
    lb.host = "host-b";
    CHECK(WriterLease::Acquire(mem, lb).status().is(Status::Code::kBusy));  // still A's
    lb.take_over = true;
    auto taken = WriterLease::Acquire(mem, lb);
    REQUIRE(taken.ok());

    // A's next write is buffered, but its FLUSH is refused: fenced.
    REQUIRE((*a)->write(kBlockSize, two, false).ok());
    Status st = (*a)->flush();
    CHECK(st.is(Status::Code::kFenced));
    a->reset();

    VolumeOptions ob = o;
    ob.index_path = dir.path + "/b.sqlite";
    ob.lease = std::move(*taken);
    auto b = Volume::Open(mem, ob);
    REQUIRE_MESSAGE(b.ok(), b.status().ToString());
    std::vector<std::byte> got(kBlockSize);
    REQUIRE((*b)->read(0, got).ok());
    CHECK(got == one);  // A's acknowledged write
    REQUIRE((*b)->close().ok());
  }
}
