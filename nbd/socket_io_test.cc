// BufferedReader over a socketpair: many small messages from one recv, large
// reads straight into the caller's buffer, and the EOF rules request_loop
// relies on (kEof only between messages, kTruncated inside one).
#include "nbd/socket_io.h"

#include <doctest/doctest.h>
#include <sys/socket.h>

#include <span>
#include <thread>
#include <vector>

#include "src/util/fd.h"

namespace portalbd::nbd {
namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    a = UniqueFd(fds[0]);
    b = UniqueFd(fds[1]);
  }
};

std::vector<std::byte> pattern(size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
  return v;
}

}  // namespace

TEST_SUITE("nbd.socket_io") {
  TEST_CASE("small messages sent together are read one by one, in order") {
    Pair p;
    std::vector<std::byte> all;
    for (unsigned i = 0; i < 100; ++i) {
      auto m = pattern(28 + i % 5, i);
      all.insert(all.end(), m.begin(), m.end());
    }
    REQUIRE(send_all(p.b.get(), all).ok());
    PlainTransport t(p.a.get());
    BufferedReader in(t);
    size_t at = 0;
    for (unsigned i = 0; i < 100; ++i) {
      std::vector<std::byte> got(28 + i % 5);
      REQUIRE(in.read_exact(got) == ReadResult::kOk);
      CHECK(std::equal(got.begin(), got.end(), all.begin() + static_cast<ptrdiff_t>(at)));
      at += got.size();
    }
    CHECK(in.buffered() == 0);
  }

  TEST_CASE("a large read takes what is buffered, then reads the rest directly") {
    Pair p;
    auto header = pattern(28, 1);
    auto payload = pattern(1 << 20, 2);
    std::thread writer([&] {
      REQUIRE(send_all(p.b.get(), header).ok());
      REQUIRE(send_all(p.b.get(), payload).ok());
    });
    PlainTransport t(p.a.get());
    BufferedReader in(t);
    std::vector<std::byte> h(28), body(1 << 20);
    REQUIRE(in.read_exact(h) == ReadResult::kOk);
    REQUIRE(in.read_exact(body) == ReadResult::kOk);
    writer.join();
    CHECK(h == header);
    CHECK(body == payload);
  }

  TEST_CASE("end of stream: kEof between messages, kTruncated inside one") {
    {
      Pair p;
      auto m = pattern(10, 3);
      REQUIRE(send_all(p.b.get(), m).ok());
      p.b.reset();
      PlainTransport t(p.a.get());
      BufferedReader in(t);
      std::vector<std::byte> got(10);
      REQUIRE(in.read_exact(got) == ReadResult::kOk);
      CHECK(in.read_exact(got) == ReadResult::kEof);
    }
    {
      Pair p;
      auto m = pattern(10, 4);
      REQUIRE(send_all(p.b.get(), m).ok());
      p.b.reset();
      PlainTransport t(p.a.get());
      BufferedReader in(t);
      std::vector<std::byte> got(16);
      CHECK(in.read_exact(got) == ReadResult::kTruncated);
    }
    {
      Pair p;  // a payload cut short while reading past the buffer
      auto m = pattern(100 * 1024, 5);
      REQUIRE(send_all(p.b.get(), m).ok());
      p.b.reset();
      PlainTransport t(p.a.get());
      BufferedReader in(t);
      std::vector<std::byte> got(200 * 1024);
      CHECK(in.read_exact(got) == ReadResult::kTruncated);
    }
  }

  TEST_CASE("discard_exact drops exactly the bytes asked for") {
    Pair p;
    auto junk = pattern(70 * 1024, 6);
    auto next = pattern(28, 7);
    REQUIRE(send_all(p.b.get(), junk).ok());
    REQUIRE(send_all(p.b.get(), next).ok());
    PlainTransport t(p.a.get());
    BufferedReader in(t);
    REQUIRE(in.discard_exact(junk.size()) == ReadResult::kOk);
    std::vector<std::byte> got(28);
    REQUIRE(in.read_exact(got) == ReadResult::kOk);
    CHECK(got == next);
  }

  TEST_CASE("wait_readable counts what has arrived, waits for the first byte, and is 0 at the end") {
    Pair p;
    PlainTransport t(p.a.get());
    BufferedReader in(t);
    REQUIRE(send_all(p.b.get(), pattern(40, 8)).ok());
    CHECK(in.wait_readable() == 40);  // all still in the kernel
    std::vector<std::byte> got(28);
    REQUIRE(in.read_exact(got) == ReadResult::kOk);
    CHECK(in.wait_readable() == 12);    // now buffered by the reader
    CHECK(in.wait_readable(12) == 12);  // enough buffered: no system call needed

    REQUIRE(in.read_exact(std::span(got.data(), 12)) == ReadResult::kOk);
    // Nothing buffered, nothing in the kernel: it waits for the writer.
    std::thread writer([&] { CHECK(send_all(p.b.get(), pattern(5, 9)).ok()); });
    CHECK(in.wait_readable() == 5);
    writer.join();
    REQUIRE(in.read_exact(std::span(got.data(), 5)) == ReadResult::kOk);
    p.b.reset();
    CHECK(in.wait_readable() == 0);
  }
}

}  // namespace portalbd::nbd
