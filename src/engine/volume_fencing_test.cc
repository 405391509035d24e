// The fencing window (WriterLease L5-L6, volume.h U7): daemon A's segment
// PUT is slow; B takes the volume over meanwhile. A's FLUSH must not be
// answered OK, A's late PUT must never replace or join B's segments, and a
// rebuild from storage sees everything B acknowledged.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>

#include "src/engine/volume.h"
#include "src/engine/writer_lease.h"
#include "src/store/memory_store.h"
#include "tests/unit/gate_store.h"
#include "tests/unit/non_conditional_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace std::chrono;
using portalbd::testing::GateStore;
using portalbd::testing::NonConditionalStore;
using portalbd::testing::TempDir;

namespace {

constexpr uint64_t kChunk = 64 << 10;

std::vector<std::byte> pattern(uint8_t seed) {
  std::vector<std::byte> v(kChunk);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::byte(static_cast<uint8_t>(seed + i * 13));
  return v;
}

bool reads(Volume& v, uint64_t offset, const std::vector<std::byte>& want) {
  std::vector<std::byte> got(want.size());
  REQUIRE(v.read(offset, got).ok());
  return std::memcmp(got.data(), want.data(), got.size()) == 0;
}

std::shared_ptr<WriterLease> claim(std::shared_ptr<ObjectStore> store, const std::string& host, bool take_over) {
  LeaseOptions o;
  o.host = host;  // another host each: only take-over breaks a claim
  o.pid = 1;
  o.take_over = take_over;
  auto lease = WriterLease::Acquire(std::move(store), o);
  REQUIRE_MESSAGE(lease.ok(), lease.status().ToString());
  return std::move(*lease);
}

std::shared_ptr<Volume> open_volume(std::shared_ptr<ObjectStore> store, const std::string& index_path,
                                    std::shared_ptr<WriterLease> lease) {
  VolumeOptions o;
  o.size_bytes = 16ull << 20;
  o.flush_interval_ms = 0;
  o.index_path = index_path;
  o.lease = std::move(lease);
  auto v = Volume::Open(std::move(store), o);
  REQUIRE_MESSAGE(v.ok(), v.status().ToString());
  return *v;
}

// Calls `before` ahead of every put/put_if_absent that reaches the inner
// store, and `after` with its result, which it may replace.
class HookStore final : public ObjectStore {
 public:
  explicit HookStore(std::shared_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}
  std::function<void(const std::string&)> before;
  std::function<Status(const std::string&, Status)> after;

  Status put(const std::string& key, std::span<const std::byte> data) override {
    if (before) before(key);
    Status st = inner_->put(key, data);
    return after ? after(key, std::move(st)) : st;
  }
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override {
    if (before) before(key);
    Status st = inner_->put_if_absent(key, data);
    return after ? after(key, std::move(st)) : st;
  }
  bool supports_conditional_put() const override { return inner_->supports_conditional_put(); }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override {
    return inner_->get_range(key, offset, length, out);
  }
  Status get(const std::string& key, std::vector<std::byte>* out) override { return inner_->get(key, out); }
  Result<ObjectInfo> head(const std::string& key) override { return inner_->head(key); }
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override { return inner_->list(prefix, out); }
  Status remove(const std::string& key) override { return inner_->remove(key); }
  std::string url() const override { return inner_->url(); }
  bool persistent() const override { return inner_->persistent(); }

 private:
  const std::shared_ptr<ObjectStore> inner_;
};

// A's first FLUSH, started with its segment PUT held at `gate`. A test that
// stops at a failed REQUIRE lets the PUT through, or the flush never ends.
struct SlowFlush {
  GateStore& gate;
  std::future<Status> result;
  SlowFlush(Volume& a, GateStore& g) : gate(g) {
    REQUIRE(a.write(0, pattern(0xA1), false).ok());
    result = std::async(std::launch::async, [&a] { return a.flush(); });
    REQUIRE(gate.wait_until([](const auto& held, const auto&) { return !held.empty(); }));
  }
  ~SlowFlush() { gate.open(); }
};

}  // namespace

TEST_SUITE("engine.fencing") {
  TEST_CASE("a FLUSH whose PUT completes after another daemon took the lease fails; it is not answered OK") {
    for (bool conditional : {true, false}) {
      CAPTURE(conditional);
      TempDir dir;
      std::shared_ptr<ObjectStore> storage = std::make_shared<MemoryStore>();
      if (!conditional) storage = std::make_shared<NonConditionalStore>(storage);
      auto gate = std::make_shared<GateStore>(storage);
      auto a = open_volume(gate, dir.path + "/a.sqlite", claim(gate, "host-a", false));
      SlowFlush flush(*a, *gate);

      // B claims the volume while A's PUT is on its way; the PUT then lands,
      // under a key B did not list.
      auto b_lease = claim(storage, "host-b", true);
      gate->open();
      REQUIRE(flush.result.wait_for(seconds(10)) == std::future_status::ready);
      Status st = flush.result.get();
      CHECK_MESSAGE(st.is(Status::Code::kFenced), st.ToString());
      CHECK(a->write(kChunk, pattern(0xA2), false).is(Status::Code::kFenced));  // and it writes no more

      // B opens only now: what it lists holds A's segment, which it may
      // replay (A's writes were answered, only not made durable), and B's
      // own writes go on from there.
      auto b = open_volume(storage, dir.path + "/b.sqlite", b_lease);
      REQUIRE(b->write(2 * kChunk, pattern(0xB1), false).ok());
      REQUIRE(b->flush().ok());
      REQUIRE(b->close().ok());
      auto fresh = open_volume(storage, dir.path + "/fresh.sqlite", claim(storage, "host-c", false));
      CHECK(reads(*fresh, 2 * kChunk, pattern(0xB1)));
      CHECK(reads(*fresh, kChunk, std::vector<std::byte>(kChunk)));
      REQUIRE(fresh->close().ok());
    }
  }

  TEST_CASE("a late PUT of the old writer never lands among the new writer's segments") {
    TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    auto gate = std::make_shared<GateStore>(mem);
    auto a = open_volume(gate, dir.path + "/a.sqlite", claim(gate, "host-a", false));
    SlowFlush flush(*a, *gate);

    // B takes over and opens while A's PUT is held: it claims every sequence
    // number A may still be uploading to, A's included.
    auto b = open_volume(mem, dir.path + "/b.sqlite", claim(mem, "host-b", true));
    REQUIRE(b->write(2 * kChunk, pattern(0xB1), false).ok());
    REQUIRE(b->flush().ok());

    gate->open();  // A's PUT arrives: refused, its key is B's
    REQUIRE(flush.result.wait_for(seconds(10)) == std::future_status::ready);
    Status st = flush.result.get();
    CHECK_MESSAGE(st.is(Status::Code::kFenced), st.ToString());
    CHECK(a->stats().segments == 0);

    REQUIRE(b->write(3 * kChunk, pattern(0xB2), false).ok());
    REQUIRE(b->flush().ok());
    REQUIRE(b->close().ok());
    auto fresh = open_volume(mem, dir.path + "/fresh.sqlite", claim(mem, "host-c", false));
    CHECK(reads(*fresh, 2 * kChunk, pattern(0xB1)));
    CHECK(reads(*fresh, 3 * kChunk, pattern(0xB2)));
    CHECK(reads(*fresh, 0, std::vector<std::byte>(kChunk)));  // A's refused FLUSH left nothing behind
    REQUIRE(fresh->close().ok());
  }

  TEST_CASE("a late PUT that lands while the new writer claims its numbers is quarantined, not replayed") {
    TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    auto gate = std::make_shared<GateStore>(mem);
    auto a = open_volume(gate, dir.path + "/a.sqlite", claim(gate, "host-a", false));
    SlowFlush flush(*a, *gate);
    auto b_lease = claim(mem, "host-b", true);

    // B's store lets A's held PUT land just before B's first claim, after
    // B's replay listed storage.
    auto hooked = std::make_shared<HookStore>(mem);
    std::once_flag landed;
    hooked->before = [&](const std::string& key) {
      if (key.rfind("segments/", 0) != 0) return;
      std::call_once(landed, [&] {
        gate->open();
        REQUIRE(gate->wait_until([](const auto&, const auto& stored) { return !stored.empty(); }));
      });
    };
    auto b = open_volume(hooked, dir.path + "/b.sqlite", b_lease);
    REQUIRE(flush.result.wait_for(seconds(10)) == std::future_status::ready);
    Status st = flush.result.get();
    CHECK_MESSAGE(st.is(Status::Code::kFenced), st.ToString());

    std::vector<ObjectInfo> quarantined;
    REQUIRE(mem->list("quarantine/segments/", &quarantined).ok());
    CHECK(quarantined.size() == 1);

    REQUIRE(b->write(2 * kChunk, pattern(0xB1), false).ok());
    REQUIRE(b->flush().ok());
    REQUIRE(b->close().ok());
    auto fresh = open_volume(mem, dir.path + "/fresh.sqlite", claim(mem, "host-c", false));
    CHECK(reads(*fresh, 2 * kChunk, pattern(0xB1)));
    CHECK(reads(*fresh, 0, std::vector<std::byte>(kChunk)));
    REQUIRE(fresh->close().ok());
  }

  TEST_CASE("a retried segment PUT that finds its own earlier attempt stored is not another writer") {
    TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    auto hooked = std::make_shared<HookStore>(mem);
    // The first PUT of the segment lands, but its answer is lost.
    bool lost = false;
    hooked->after = [&](const std::string& key, Status st) {
      if (key.rfind("segments/", 0) != 0 || lost) return st;
      lost = true;
      return Status::IOError("injected: the answer to a PUT that landed was lost");
    };
    auto v = open_volume(hooked, dir.path + "/v.sqlite", claim(hooked, "host-a", false));
    REQUIRE(v->write(0, pattern(0xC1), false).ok());
    CHECK(v->flush().is(Status::Code::kIOError));
    REQUIRE(lost);
    Status retried = v->flush();  // finds its own bytes under the key
    CHECK_MESSAGE(retried.ok(), retried.ToString());
    REQUIRE(v->close().ok());
    auto fresh = open_volume(mem, dir.path + "/fresh.sqlite", claim(mem, "host-c", false));
    CHECK(reads(*fresh, 0, pattern(0xC1)));
    REQUIRE(fresh->close().ok());
  }

  TEST_CASE("another writer's object under the volume's next sequence number fences it") {
    TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    auto v = open_volume(mem, dir.path + "/v.sqlite", claim(mem, "host-a", false));
    REQUIRE(v->write(0, pattern(0xC1), false).ok());
    REQUIRE(v->flush().ok());
    const uint64_t seq = v->stats().next_seq;
    REQUIRE(mem->put(segment_key(seq), pattern(0)).ok());  // not a segment of this writer's
    REQUIRE(v->write(kChunk, pattern(0xC2), false).ok());
    Status st = v->flush();
    CHECK_MESSAGE(st.is(Status::Code::kFenced), st.ToString());
    CHECK(v->write(2 * kChunk, pattern(0xC3), false).is(Status::Code::kFenced));
    std::vector<std::byte> left;
    REQUIRE(mem->get(segment_key(seq), &left).ok());
    CHECK(left == pattern(0));  // left as it was found
  }
}
