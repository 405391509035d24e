#include "src/engine/writer_lease.h"

#include <doctest/doctest.h>

#include "src/store/memory_store.h"
#include "src/util/clock.h"
#include "tests/unit/non_conditional_store.h"

using namespace portalbd;
using portalbd::testing::NonConditionalStore;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// A daemon on another host, alive: only expiry, take-over or its release
// ends its claim.
LeaseOptions other_host(const std::string& host, std::function<int64_t()> clock = nullptr) {
  LeaseOptions o;
  o.host = host;
  o.pid = 1;
  o.clock = std::move(clock);
  return o;
}

}  // namespace

TEST_SUITE("engine.lease") {
  TEST_CASE("one writer: a second claim is refused naming the holder; take-over fences the first") {
    auto store = std::make_shared<MemoryStore>();
    LeaseOptions a;
    a.host = "host-a";
    a.pid = ::getpid();  // alive
    auto first = WriterLease::Acquire(store, a);
    REQUIRE(first.ok());
    CHECK((*first)->check().ok());

    LeaseOptions b;
    b.host = "host-b";
    b.pid = 1;
    auto second = WriterLease::Acquire(store, b);
    REQUIRE_FALSE(second.ok());
    CHECK(second.status().is(Status::Code::kBusy));
    CHECK(second.status().message().find("host host-a pid") != std::string::npos);

    b.take_over = true;
    auto taker = WriterLease::Acquire(store, b);
    REQUIRE(taker.ok());
    CHECK((*first)->check().is(Status::Code::kFenced));
    CHECK((*first)->renew().is(Status::Code::kFenced));
    CHECK((*first)->fenced());
    CHECK((*taker)->renew().ok());
    REQUIRE((*first)->release().ok());  // a fenced writer leaves the new holder's lease alone
    CHECK((*taker)->check().ok());
  }

  TEST_CASE("stale claims: a dead process on this host, or an expired lease, are taken over") {
    auto store = std::make_shared<MemoryStore>();
    int64_t now = 1'000'000;
    LeaseOptions dead;
    dead.host = "here";
    dead.pid = 0x7ffffff0;  // no such process
    dead.clock = [&] { return now; };
    REQUIRE(WriterLease::Acquire(store, dead).ok());
    LeaseOptions again = dead;
    again.pid = ::getpid();
    auto restarted = WriterLease::Acquire(store, again);
    REQUIRE(restarted.ok());

    LeaseOptions other;
    other.host = "elsewhere";
    other.pid = 1;
    other.clock = [&] { return now; };
    CHECK(WriterLease::Acquire(store, other).status().is(Status::Code::kBusy));
    now += 61'000;  // past the 60 s lease of `restarted`, which did not renew
    CHECK(WriterLease::Acquire(store, other).ok());
    CHECK((*restarted)->check().is(Status::Code::kFenced));
  }

  TEST_CASE("release removes the lease so the next daemon starts cleanly") {
    auto store = std::make_shared<MemoryStore>();
    LeaseOptions o;
    o.host = "h";
    o.pid = 1;
    auto l = WriterLease::Acquire(store, o);
    REQUIRE(l.ok());
    REQUIRE((*l)->release().ok());
    CHECK(store->head(WriterLease::kKey).status().is(Status::Code::kNotFound));
    LeaseOptions p = o;
    p.host = "other";
    CHECK(WriterLease::Acquire(store, p).ok());
  }

  TEST_CASE("a torn or empty lease counts as held until it is older than the TTL; --take-over breaks it at once") {
    for (const std::string& torn : {std::string("{\n \"expires_unix_ms\": 17"), std::string()}) {
      CAPTURE(torn);
      auto store = std::make_shared<MemoryStore>();
      REQUIRE(store->put(WriterLease::kKey, bytes_of(torn)).ok());  // a writer died mid-PUT (s3rver keeps the part)
      int64_t now = now_unix_ms();                                  // the store stamps objects with the real clock
      auto refused = WriterLease::Acquire(store, other_host("b", [&] { return now; }));
      REQUIRE_FALSE(refused.ok());
      CHECK(refused.status().is(Status::Code::kBusy));
      const std::string& msg = refused.status().message();
      CHECK(msg.find("lock/writer.json in memory:// is unreadable") != std::string::npos);
      CHECK(msg.find("--take-over") != std::string::npos);
      CHECK(msg.find("until") != std::string::npos);

      now += 30'000;  // half the TTL: still held
      CHECK(WriterLease::Acquire(store, other_host("b", [&] { return now; })).status().is(Status::Code::kBusy));
      now += 31'000;  // older than the 60 s TTL
      auto after_ttl = WriterLease::Acquire(store, other_host("b", [&] { return now; }));
      REQUIRE(after_ttl.ok());
      CHECK((*after_ttl)->replaced_claim());
      CHECK((*after_ttl)->check().ok());
    }

    auto store = std::make_shared<MemoryStore>();
    REQUIRE(store->put(WriterLease::kKey, bytes_of("{\"host\": \"a\"")).ok());
    LeaseOptions take = other_host("b");
    take.take_over = true;
    auto taken = WriterLease::Acquire(store, take);
    REQUIRE(taken.ok());
    CHECK((*taken)->replaced_claim());
    CHECK((*taken)->check().ok());
  }

  TEST_CASE("a lease torn while the holder runs is not a verdict: check() says try again, and nothing is fenced") {
    auto store = std::make_shared<MemoryStore>();
    auto lease = WriterLease::Acquire(store, other_host("a"));
    REQUIRE(lease.ok());
    CHECK_FALSE((*lease)->replaced_claim());
    REQUIRE(store->put(WriterLease::kKey, bytes_of("{\"ho")).ok());
    Status st = (*lease)->check();
    CHECK(st.is(Status::Code::kUnavailable));
    CHECK_FALSE((*lease)->fenced());
    CHECK((*lease)->renew().is(Status::Code::kUnavailable));  // never written over: it may be a taker's
  }

  TEST_CASE("a store that ignores conditional puts: a live lease is not overwritten, an expired one is") {
    auto store = std::make_shared<NonConditionalStore>(std::make_shared<MemoryStore>());
    int64_t now = 1'000'000;
    auto first = WriterLease::Acquire(store, other_host("a", [&] { return now; }));
    REQUIRE(first.ok());

    auto second = WriterLease::Acquire(store, other_host("b", [&] { return now; }));
    REQUIRE_FALSE(second.ok());
    CHECK(second.status().is(Status::Code::kBusy));
    CHECK(second.status().message().find("host a pid") != std::string::npos);
    CHECK((*first)->check().ok());  // still the holder: its FLUSHes keep working

    now += 61'000;  // `first` did not renew
    auto later = WriterLease::Acquire(store, other_host("b", [&] { return now; }));
    REQUIRE(later.ok());
    CHECK((*later)->replaced_claim());
    CHECK((*first)->check().is(Status::Code::kFenced));
  }

  TEST_CASE("a store that ignores conditional puts: a claim that lands right behind ours wins, and we yield") {
    auto store = std::make_shared<NonConditionalStore>(std::make_shared<MemoryStore>());
    auto inner_racer = std::make_shared<MemoryStore>();  // where the racer's claim is made, then copied over ours
    bool raced = false;
    store->after_put = [&](const std::string& key) {
      if (key != WriterLease::kKey || raced) return;
      raced = true;
      auto racer = WriterLease::Acquire(inner_racer, other_host("racer"));
      REQUIRE(racer.ok());
      std::vector<std::byte> theirs;
      REQUIRE(inner_racer->get(WriterLease::kKey, &theirs).ok());
      REQUIRE(store->put(WriterLease::kKey, theirs).ok());
    };
    auto mine = WriterLease::Acquire(store, other_host("me"));
    REQUIRE(raced);
    REQUIRE_FALSE(mine.ok());
    CHECK(mine.status().is(Status::Code::kBusy));
    CHECK(mine.status().message().find("host racer") != std::string::npos);
  }

  TEST_CASE("release is once: a released lease is neither fenced nor usable, and the next claim starts clean") {
    auto store = std::make_shared<MemoryStore>();
    auto l = WriterLease::Acquire(store, other_host("h"));
    REQUIRE(l.ok());
    REQUIRE((*l)->release().ok());
    REQUIRE((*l)->release().ok());  // a failed start's clean-up after close() released it
    CHECK_FALSE((*l)->fenced());
    CHECK((*l)->check().is(Status::Code::kFenced));
    auto next = WriterLease::Acquire(store, other_host("other"));
    REQUIRE(next.ok());
    CHECK_FALSE((*next)->replaced_claim());
  }

  TEST_CASE("fence() marks the lease lost without asking storage") {
    auto store = std::make_shared<MemoryStore>();
    auto l = WriterLease::Acquire(store, other_host("h"));
    REQUIRE(l.ok());
    (*l)->fence("test: another writer's segment under our sequence number");
    CHECK((*l)->fenced());
    CHECK((*l)->check().is(Status::Code::kFenced));
    REQUIRE((*l)->release().ok());  // leaves whatever is there alone
    CHECK(store->head(WriterLease::kKey).ok());
  }
}
