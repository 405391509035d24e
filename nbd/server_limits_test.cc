// The NBD server's resource bounds (issue 18): the connection cap, and the
// WRITE payload budget shared by all connections (nbd/payload_budget.h) as
// clients see it: back-pressure instead of allocation, a request larger than
// the budget, many writers through a small budget, and stop() while readers
// wait for it.
#include <doctest/doctest.h>
#include <libnbd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "nbd/testing/fixture.h"

namespace portalbd::nbd {
namespace {

using testing::NbdHandle;
using testing::pattern;
using testing::RawClient;
using testing::ServerFixture;

// Polls `done` for up to 10 s: a condition decides, not a sleep.
template <class F>
bool eventually(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

ServerOptions limited(uint32_t max_connections, uint64_t payload_bytes) {
  ServerOptions o = ServerFixture::default_options();  // max_request_bytes = 1 MiB
  o.max_connections = max_connections;
  o.max_write_payload_bytes = payload_bytes;
  return o;
}

// A raw client in transmission on export "disk".
std::unique_ptr<RawClient> transmitting(ServerFixture& f) {
  auto c = std::make_unique<RawClient>(f.socket_path());
  REQUIRE(c->connected());
  REQUIRE(c->greet());
  REQUIRE(c->go("disk"));
  return c;
}

}  // namespace

TEST_SUITE("nbd.server_limits") {
  TEST_CASE("max_connections: one more is closed before the greeting, and a slot frees when a client leaves") {
    ServerFixture f(limited(2, 1 << 20));
    REQUIRE(f.start_status.ok());
    auto a = transmitting(f);
    auto b = transmitting(f);

    RawClient refused(f.socket_path());
    REQUIRE(refused.connected());  // the kernel accepts; the server closes it at once
    CHECK(refused.closed_by_server());
    CHECK(f.server->stats().connections_refused == 1);
    CHECK(f.server->stats().connections_active == 2);

    a.reset();  // its connection ends; the next accept reaps it
    REQUIRE(eventually([&] { return f.server->stats().connections_active == 1; }));
    auto c = transmitting(f);
    c->send_request(proto::kCmdRead, 0, 7, 0, 512);
    auto r = c->read_simple_reply();
    CHECK(r.ok);
    CHECK(r.cookie == 7);
  }

  TEST_CASE("a WRITE header with no payload holds no budget: other clients still write") {
    ServerFixture f(limited(16, 1 << 20));
    REQUIRE(f.start_status.ok());
    // Claims the whole budget's worth, then sends nothing.
    auto idle = transmitting(f);
    idle->send_request(proto::kCmdWrite, 0, 1, 0, 1 << 20);

    NbdHandle h = f.connect();
    REQUIRE(h);
    auto data = pattern(512 << 10, 3);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 1 << 20, 0) == 0);
    std::vector<std::byte> back(data.size());
    REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 1 << 20, 0) == 0);
    CHECK(back == data);
    CHECK(f.server->stats().payload_waits == 0);
  }

  TEST_CASE("a WRITE larger than the whole budget goes through") {
    ServerFixture f(limited(16, 64 << 10));  // 64 KiB budget, 1 MiB requests
    REQUIRE(f.start_status.ok());
    NbdHandle h = f.connect();
    REQUIRE(h);
    auto data = pattern(1 << 20, 5);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0) == 0);
    std::vector<std::byte> back(data.size());
    REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 0, 0) == 0);
    CHECK(back == data);
    CHECK(f.server->stats().payload_bytes_held == 0);
  }

  TEST_CASE("a reader waits for budget while another payload is half-sent, then goes on") {
    ServerFixture f(limited(16, 1 << 20));
    REQUIRE(f.start_status.ok());
    // `first` starts its payload and stalls half-way: it holds a 1 MiB buffer,
    // the whole budget, and is the oldest reader.
    auto first = transmitting(f);
    first->send_request(proto::kCmdWrite, 0, 1, 0, 1 << 20);
    auto head = pattern(512 << 10, 1);
    REQUIRE(first->send_bytes(head));
    REQUIRE(eventually([&] { return f.server->stats().payload_bytes_held == (1u << 20); }));

    // `second` sends a whole 64 KiB write: its reader must wait for budget.
    auto second = transmitting(f);
    second->send_request(proto::kCmdWrite, 0, 2, 2 << 20, 64 << 10);
    auto small = pattern(64 << 10, 2);
    REQUIRE(second->send_bytes(small));
    REQUIRE(eventually([&] { return f.server->stats().payload_waits >= 1; }));

    // The rest of the first payload: both writes complete, in that order of need.
    auto tail = pattern(512 << 10, 3);
    REQUIRE(first->send_bytes(tail));
    auto r1 = first->read_simple_reply();
    CHECK(r1.ok);
    CHECK(r1.error == 0);
    auto r2 = second->read_simple_reply();
    CHECK(r2.ok);
    CHECK(r2.error == 0);
    CHECK(r2.cookie == 2);
    REQUIRE(eventually([&] { return f.server->stats().payload_bytes_held == 0; }));

    std::vector<std::byte> got(64 << 10);
    NbdHandle h = f.connect();
    REQUIRE(h);
    REQUIRE(nbd_pread(h.get(), got.data(), got.size(), 2 << 20, 0) == 0);
    CHECK(got == small);
    std::vector<std::byte> whole(1 << 20);
    REQUIRE(nbd_pread(h.get(), whole.data(), whole.size(), 0, 0) == 0);
    CHECK(std::equal(head.begin(), head.end(), whole.begin()));
    CHECK(std::equal(tail.begin(), tail.end(), whole.begin() + (512 << 10)));
  }

  TEST_CASE("many writers through a small budget all finish with the right bytes") {
    ServerOptions o = limited(16, 256 << 10);
    o.workers_per_connection = 2;
    ServerFixture f(o);
    REQUIRE(f.start_status.ok());
    constexpr int kClients = 4, kWrites = 10;
    constexpr size_t kBlock = 192 << 10;  // kClients * kWrites * kBlock must fit in the 8 MiB disk
    std::vector<std::thread> threads;
    std::vector<int> failures(kClients, 0);
    for (int c = 0; c < kClients; ++c) {
      threads.emplace_back([&, c] {
        NbdHandle h = f.connect();
        if (!h) {
          ++failures[c];
          return;
        }
        for (int i = 0; i < kWrites; ++i) {
          auto data = pattern(kBlock, static_cast<uint8_t>(c * 31 + i));
          const uint64_t at = (static_cast<uint64_t>(c) * kWrites + i) * kBlock;
          // FUA sends every other write to the workers, so claims are held
          // across threads too.
          if (nbd_pwrite(h.get(), data.data(), data.size(), at, i % 2 ? LIBNBD_CMD_FLAG_FUA : 0) != 0) ++failures[c];
        }
      });
    }
    for (std::thread& t : threads) t.join();
    for (int c = 0; c < kClients; ++c) CHECK(failures[c] == 0);
    NbdHandle h = f.connect();
    REQUIRE(h);
    for (int c = 0; c < kClients; ++c) {
      for (int i = 0; i < kWrites; ++i) {
        std::vector<std::byte> got(kBlock);
        const uint64_t at = (static_cast<uint64_t>(c) * kWrites + i) * kBlock;
        REQUIRE(nbd_pread(h.get(), got.data(), got.size(), at, 0) == 0);
        CHECK(got == pattern(kBlock, static_cast<uint8_t>(c * 31 + i)));
      }
    }
    CHECK(f.server->stats().payload_bytes_held == 0);
  }

  TEST_CASE("stop() returns while a reader waits for budget") {
    ServerFixture f(limited(16, 1 << 20));
    REQUIRE(f.start_status.ok());
    auto holder = transmitting(f);  // holds the whole budget, half-sent
    holder->send_request(proto::kCmdWrite, 0, 1, 0, 1 << 20);
    REQUIRE(holder->send_bytes(pattern(4096, 1)));
    REQUIRE(eventually([&] { return f.server->stats().payload_bytes_held == (1u << 20); }));
    auto waiter = transmitting(f);
    waiter->send_request(proto::kCmdWrite, 0, 2, 2 << 20, 4096);
    REQUIRE(waiter->send_bytes(pattern(4096, 2)));
    REQUIRE(eventually([&] { return f.server->stats().payload_waits >= 1; }));

    const auto t0 = std::chrono::steady_clock::now();
    f.server->stop();
    // Well inside stop()'s 10 s grace: the wait is cancelled, not timed out.
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    CHECK(f.server->stats().payload_bytes_held == 0);
  }
}

}  // namespace portalbd::nbd
