#include "src/engine/writer_lease.h"

#include <doctest/doctest.h>

#include "src/store/memory_store.h"

using namespace portalbd;

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
}
