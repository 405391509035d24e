// Malformed and unusual traffic over raw sockets: what a fuzzer or a broken
// client sends, and what no libnbd call can produce. Each test checks the
// answer the spec requires, then that the server still serves a fresh client.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "nbd/testing/fixture.h"

namespace portalbd::nbd {
namespace {

using namespace proto;
using testing::RawClient;
using testing::ServerFixture;

// A fresh connection negotiates and round-trips data: the server is healthy.
bool server_healthy(ServerFixture& f) {
  RawClient c(f.socket_path());
  if (!c.greet() || !c.go("disk")) return false;
  auto data = testing::pattern(512, 77);
  WireWriter w;
  w.u32(kRequestMagic).u16(0).u16(kCmdWrite).u64(1).u64(4096).u32(512);
  w.data().insert(w.data().end(), data.begin(), data.end());
  c.send(w);
  auto wr = c.read_simple_reply();
  c.send_request(kCmdRead, 0, 2, 4096, 512);
  auto rr = c.read_simple_reply();
  return wr.ok && wr.error == 0 && rr.ok && rr.error == 0 && rr.cookie == 2 && c.recv(512) == data;
}

}  // namespace

TEST_SUITE("nbd.raw") {
  TEST_CASE("greeting advertises FIXED_NEWSTYLE and NO_ZEROES") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    CHECK(c.handshake_flags == (kFlagFixedNewstyle | kFlagNoZeroes));
  }

  TEST_CASE("unknown client flags close the connection") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet(kClientFlagFixedNewstyle | (1u << 7)));
    CHECK(c.closed_by_server());
    CHECK(server_healthy(f));
  }

  TEST_CASE("a wrong option magic closes the connection") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    c.send_option(kOptGo, RawClient::go_payload("disk"), 0x1122334455667788ull);
    CHECK(c.closed_by_server());
    CHECK(server_healthy(f));
  }

  TEST_CASE("unknown option: ERR_UNSUP, then GO and I/O on the same connection") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    c.send_option(999, std::vector<std::byte>(17));
    auto r = c.read_option_reply();
    REQUIRE(r.ok);
    CHECK(r.option == 999);
    CHECK(r.type == kRepErrUnsup);
    c.send_option(kOptExtendedHeaders, {});
    CHECK(c.read_option_reply().type == kRepErrUnsup);
    REQUIRE(c.go("disk"));
    c.send_request(kCmdRead, 0, 7, 0, 512);
    auto rep = c.read_simple_reply();
    CHECK(rep.ok);
    CHECK(rep.error == 0);
    CHECK(rep.cookie == 7);
    CHECK(c.recv(512).size() == 512);
  }

  TEST_CASE("STARTTLS is refused by policy, never TLS_REQD") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    c.send_option(kOptStartTls, {});
    CHECK(c.read_option_reply().type == kRepErrPolicy);
    CHECK(c.go("disk"));
  }

  TEST_CASE("a huge option length is answered with ERR_TOO_BIG and never allocated") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    WireWriter w;
    w.u64(kOptionMagic).u32(kOptGo).u32(0xfffffff0u);
    c.send(w);
    auto r = c.read_option_reply();
    REQUIRE(r.ok);
    CHECK(r.type == kRepErrTooBig);
    CHECK(c.closed_by_server());
    CHECK(server_healthy(f));
  }

  TEST_CASE("a truncated option payload closes the connection") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    WireWriter w;
    w.u64(kOptionMagic).u32(kOptGo).u32(100).zeroes(10);
    c.send(w);
    ::shutdown(c.fd(), SHUT_WR);
    CHECK(c.closed_by_server());
    CHECK(server_healthy(f));
  }

  TEST_CASE("malformed option payloads get ERR_INVALID and negotiation continues") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    // GO whose name length runs past the payload.
    WireWriter bad_go;
    bad_go.u32(1000).bytes("disk").u16(0);
    c.send_option(kOptGo, bad_go.data());
    CHECK(c.read_option_reply().type == kRepErrInvalid);
    // GO with an info count that does not match the bytes sent.
    WireWriter bad_count;
    bad_count.u32(4).bytes("disk").u16(3).u16(kInfoName);
    c.send_option(kOptInfo, bad_count.data());
    CHECK(c.read_option_reply().type == kRepErrInvalid);
    // LIST and STRUCTURED_REPLY take no data.
    c.send_option(kOptList, std::vector<std::byte>(3));
    CHECK(c.read_option_reply().type == kRepErrInvalid);
    c.send_option(kOptStructuredReply, std::vector<std::byte>(1));
    CHECK(c.read_option_reply().type == kRepErrInvalid);
    // Meta contexts before structured replies.
    WireWriter meta;
    meta.u32(4).bytes("disk").u32(0);
    c.send_option(kOptListMetaContext, meta.data());
    CHECK(c.read_option_reply().type == kRepErrInvalid);
    // GO to an unknown export: ERR_UNKNOWN, still negotiating.
    c.send_option(kOptGo, RawClient::go_payload("missing"));
    CHECK(c.read_option_reply().type == kRepErrUnknown);
    CHECK(c.go("disk"));
  }

  TEST_CASE("INFO replies EXPORT and BLOCK_SIZE, then NAME and DESCRIPTION when asked") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    WireWriter w;
    w.u32(0).u16(2).u16(kInfoName).u16(kInfoDescription);
    c.send_option(kOptInfo, w.data());
    std::vector<uint16_t> types;
    for (;;) {
      auto r = c.read_option_reply();
      REQUIRE(r.ok);
      if (r.type == kRepAck) break;
      REQUIRE(r.type == kRepInfo);
      uint16_t type = load_be16(r.payload.data());
      types.push_back(type);
      if (type == kInfoExport) {
        CHECK(load_be64(r.payload.data() + 2) == testing::kDiskSize);
        uint16_t flags = load_be16(r.payload.data() + 10);
        CHECK((flags & kFlagHasFlags));
        CHECK((flags & kFlagSendFlush));
        CHECK((flags & kFlagSendFua));
        CHECK((flags & kFlagSendTrim));
        CHECK((flags & kFlagSendWriteZeroes));
        CHECK_FALSE((flags & kFlagReadOnly));
        CHECK_FALSE((flags & kFlagSendDf));  // no structured replies negotiated
      } else if (type == kInfoBlockSize) {
        CHECK(load_be32(r.payload.data() + 2) == 1);
        CHECK(load_be32(r.payload.data() + 6) == 4096);
        CHECK(load_be32(r.payload.data() + 10) == 1024 * 1024);
      } else if (type == kInfoName) {
        CHECK(std::string(reinterpret_cast<const char*>(r.payload.data()) + 2, r.payload.size() - 2) == "disk");
      } else if (type == kInfoDescription) {
        CHECK(std::string(reinterpret_cast<const char*>(r.payload.data()) + 2, r.payload.size() - 2) ==
              "the test disk");
      }
    }
    CHECK(types == std::vector<uint16_t>{kInfoExport, kInfoBlockSize, kInfoName, kInfoDescription});
  }

  TEST_CASE("EXPORT_NAME: size, flags and 124 zeroes without NO_ZEROES; unknown name closes") {
    ServerFixture f;
    {
      RawClient c(f.socket_path());
      REQUIRE(c.greet(kClientFlagFixedNewstyle));
      c.send_option(kOptExportName,
                    std::vector<std::byte>{std::byte('d'), std::byte('i'), std::byte('s'), std::byte('k')});
      auto r = c.recv(8 + 2 + 124);
      REQUIRE(r.size() == 134);
      CHECK(load_be64(r.data()) == testing::kDiskSize);
      CHECK(std::vector<std::byte>(r.begin() + 10, r.end()) == std::vector<std::byte>(124));
      c.send_request(kCmdFlush, 0, 5, 0, 0);
      CHECK(c.read_simple_reply().error == 0);
    }
    {
      RawClient c(f.socket_path());
      REQUIRE(c.greet());
      c.send_option(kOptExportName, std::vector<std::byte>(3, std::byte('x')));
      CHECK(c.closed_by_server());
    }
    CHECK(server_healthy(f));
  }

  TEST_CASE("ABORT is acknowledged, then the server hangs up") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    c.send_option(kOptAbort, {});
    auto r = c.read_option_reply();
    CHECK(r.type == kRepAck);
    CHECK(c.closed_by_server());
  }

  TEST_CASE("a wrong request magic closes that connection only") {
    ServerFixture f;
    RawClient other(f.socket_path());
    REQUIRE(other.greet());
    REQUIRE(other.go("disk"));
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    REQUIRE(c.go("disk"));
    c.send_request(kCmdRead, 0, 1, 0, 512, 0xcafef00d);
    CHECK(c.closed_by_server());
    other.send_request(kCmdFlush, 0, 9, 0, 0);
    auto r = other.read_simple_reply();
    CHECK(r.ok);
    CHECK(r.cookie == 9);
    CHECK(server_healthy(f));
  }

  TEST_CASE("a truncated request or write payload closes the connection") {
    ServerFixture f;
    {
      RawClient c(f.socket_path());
      REQUIRE(c.greet());
      REQUIRE(c.go("disk"));
      WireWriter w;
      w.u32(kRequestMagic).u16(0).u16(kCmdRead).u32(0);  // 12 of 28 bytes
      c.send(w);
      ::shutdown(c.fd(), SHUT_WR);
      CHECK(c.closed_by_server());
    }
    {
      RawClient c(f.socket_path());
      REQUIRE(c.greet());
      REQUIRE(c.go("disk"));
      WireWriter w;
      w.u32(kRequestMagic).u16(0).u16(kCmdWrite).u64(1).u64(0).u32(4096).zeroes(100);
      c.send(w);
      ::shutdown(c.fd(), SHUT_WR);
      CHECK(c.closed_by_server());
    }
    CHECK(server_healthy(f));
  }

  TEST_CASE("unknown command and unknown flags: EINVAL, the connection goes on") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    REQUIRE(c.go("disk"));
    c.send_request(42, 0, 1, 0, 512);
    auto r = c.read_simple_reply();
    CHECK(r.error == kEinval);
    CHECK(r.cookie == 1);
    c.send_request(kCmdRead, 1u << 12, 2, 0, 512);
    CHECK(c.read_simple_reply().error == kEinval);
    // BLOCK_STATUS without a metadata context.
    c.send_request(kCmdBlockStatus, 0, 3, 0, 512);
    CHECK(c.read_simple_reply().error == kEinval);
    c.send_request(kCmdRead, 0, 4, 0, 512);
    r = c.read_simple_reply();
    CHECK(r.error == 0);
    CHECK(r.cookie == 4);
    CHECK(c.recv(512).size() == 512);
  }

  TEST_CASE("refused writes have their payload discarded, keeping the stream in sync") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    REQUIRE(c.go("disk"));
    // Past the end: ENOSPC; with an unknown flag: EINVAL; too big: EINVAL.
    struct Case {
      uint16_t flags;
      uint64_t offset;
      uint32_t length;
      uint32_t error;
    };
    for (Case k : {Case{0, testing::kDiskSize - 100, 4096, kEnospc}, Case{1u << 13, 0, 4096, kEinval},
                   Case{0, 0, 2 * 1024 * 1024, kEinval}}) {
      WireWriter w;
      w.u32(kRequestMagic).u16(k.flags).u16(kCmdWrite).u64(11).u64(k.offset).u32(k.length);
      // Payload bytes that look like a request: if the server parsed them as
      // one, it would answer cookie 0xbad.
      for (uint32_t i = 0; i + 28 <= k.length; i += 28) {
        w.u32(kRequestMagic).u16(0).u16(kCmdFlush).u64(0xbad).u64(0).u32(0);
      }
      w.zeroes(k.length % 28);
      c.send(w);
      auto r = c.read_simple_reply();
      CHECK(r.cookie == 11);
      CHECK(r.error == k.error);
    }
    c.send_request(kCmdFlush, 0, 12, 0, 0);
    auto r = c.read_simple_reply();
    CHECK(r.cookie == 12);
    CHECK(r.error == 0);
    CHECK(f.disk->flushes == 1);
  }

  TEST_CASE("pipelined requests are all answered, DISC after them closes") {
    ServerFixture f;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    REQUIRE(c.go("disk"));
    for (uint64_t cookie = 100; cookie < 110; ++cookie) c.send_request(kCmdFlush, 0, cookie, 0, 0);
    c.send_request(kCmdDisc, 0, 999, 0, 0);
    std::vector<uint64_t> cookies;
    for (int i = 0; i < 10; ++i) {
      auto r = c.read_simple_reply();
      REQUIRE(r.ok);
      CHECK(r.error == 0);
      cookies.push_back(r.cookie);
    }
    std::sort(cookies.begin(), cookies.end());
    for (uint64_t i = 0; i < 10; ++i) CHECK(cookies[i] == 100 + i);
    CHECK(c.closed_by_server());
  }

  // Pushes 64 x 64 KiB writes with `flags` at a device whose gate is closed
  // and checks that the server stops reading far below the 4 MiB offered,
  // with `expect_waiting` requests stuck in the device; then opens the gate
  // and checks that every write is answered.
  void check_back_pressure(uint16_t flags, int expect_waiting) {
    ServerOptions o = ServerFixture::default_options();
    o.workers_per_connection = 2;
    o.max_inflight_bytes = 256 * 1024;
    ServerFixture f(o);
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    REQUIRE(c.go("disk"));
    f.disk->close_gate();
    REQUIRE(fcntl(c.fd(), F_SETFL, fcntl(c.fd(), F_GETFL) | O_NONBLOCK) == 0);
    constexpr uint32_t kLen = 64 * 1024;
    WireWriter w;
    for (uint64_t i = 0; i < 64; ++i) {
      w.u32(kRequestMagic).u16(flags).u16(kCmdWrite).u64(i).u64(i * kLen).u32(kLen);
      w.zeroes(kLen);
    }
    size_t sent = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (sent < w.size() && std::chrono::steady_clock::now() < deadline) {
      ssize_t n = ::send(c.fd(), w.data().data() + sent, w.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    // The server stopped reading near the cap (256 KiB, plus one request,
    // plus its read buffer, plus socket buffers), far below the 4 MiB offered.
    CHECK(sent < w.size());
    CHECK(sent < 2u * 1024 * 1024);
    CHECK(f.disk->waiting_at_gate() == expect_waiting);
    f.disk->open_gate();
    REQUIRE(fcntl(c.fd(), F_SETFL, fcntl(c.fd(), F_GETFL) & ~O_NONBLOCK) == 0);
    REQUIRE(send_all(c.fd(), std::span(w.data()).subspan(sent)).ok());
    std::vector<bool> answered(64);
    for (int i = 0; i < 64; ++i) {
      auto r = c.read_simple_reply();
      REQUIRE(r.ok);
      CHECK(r.error == 0);
      REQUIRE(r.cookie < 64);
      answered[r.cookie] = true;
    }
    CHECK(std::count(answered.begin(), answered.end(), true) == 64);
  }

  TEST_CASE("back-pressure: a stalled device stops the server reading, memory stays bounded (queued FUA writes)") {
    // FUA writes go to the workers: both stall, the in-flight cap stops the reader.
    check_back_pressure(kCmdFlagFua, 2);
  }

  TEST_CASE("back-pressure: a stalled device stops the server reading, memory stays bounded (inline writes)") {
    // Plain writes run on the reader thread: the reader itself stalls.
    check_back_pressure(0, 1);
  }

  // With one worker stalled on a READ, sends FLUSH and a FUA TRIM; true when
  // both are answered while the READ still waits (they ran on the reader).
  bool flush_overtakes_stalled_read(bool free_flush) {
    ServerOptions o = ServerFixture::default_options();
    o.workers_per_connection = 1;
    ServerFixture f(o);
    f.disk->free_flush = free_flush;
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    REQUIRE(c.go("disk"));
    f.disk->close_gate();
    c.send_request(kCmdRead, 0, 1, 0, 4096);
    for (int i = 0; i < 200 && f.disk->waiting_at_gate() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(f.disk->waiting_at_gate() == 1);
    c.send_request(kCmdFlush, 0, 2, 0, 0);
    c.send_request(kCmdTrim, kCmdFlagFua, 3, 8192, 4096);
    struct pollfd p {
      c.fd(), POLLIN, 0
    };
    const bool answered_first = ::poll(&p, 1, 300) == 1;
    std::vector<uint64_t> order;
    f.disk->open_gate();
    for (int i = 0; i < 3; ++i) {
      auto r = c.read_simple_reply();
      REQUIRE(r.ok);
      CHECK(r.error == 0);
      if (r.cookie == 1) REQUIRE(c.recv(4096).size() == 4096);  // the READ's data
      order.push_back(r.cookie);
    }
    CHECK(f.disk->flushes == 1);
    CHECK(f.disk->fua_count == 1);
    if (answered_first) CHECK(order == std::vector<uint64_t>{2, 3, 1});
    return answered_first;
  }

  TEST_CASE("FLUSH and FUA run on the reader thread when the device's flush is free (memory://)") {
    CHECK(flush_overtakes_stalled_read(true));
    // Otherwise they wait for a worker, here behind the stalled READ.
    CHECK_FALSE(flush_overtakes_stalled_read(false));
  }

  TEST_CASE("a queued FLUSH covers the writes answered before it was received, not before a worker ran it") {
    // The device's flush ticket is taken when the FLUSH is read: writes that
    // arrive while it waits for a worker are not its to wait for (a device
    // that group-commits may then find it already covered).
    ServerOptions o = ServerFixture::default_options();
    o.workers_per_connection = 1;
    ServerFixture f(o);
    RawClient c(f.socket_path());
    REQUIRE(c.greet());
    REQUIRE(c.go("disk"));
    f.disk->close_gate();
    c.send_request(kCmdRead, 0, 1, 0, 4096);  // holds the only worker
    for (int i = 0; i < 200 && f.disk->waiting_at_gate() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(f.disk->waiting_at_gate() == 1);
    c.send_request(kCmdTrim, 0, 2, 8192, 4096);   // runs on the reader: the first write
    c.send_request(kCmdFlush, 0, 3, 0, 0);        // queued behind the READ
    c.send_request(kCmdTrim, 0, 4, 16384, 4096);  // answered after the FLUSH was received
    for (int i = 0; i < 2; ++i) {                 // the two TRIMs, answered while the READ waits
      auto r = c.read_simple_reply();
      REQUIRE(r.ok);
      CHECK(r.error == 0);
      CHECK((r.cookie == 2 || r.cookie == 4));
    }
    CHECK(f.disk->mutations == 2);
    f.disk->open_gate();
    for (int i = 0; i < 2; ++i) {
      auto r = c.read_simple_reply();
      REQUIRE(r.ok);
      CHECK(r.error == 0);
      if (r.cookie == 1) REQUIRE(c.recv(4096).size() == 4096);
    }
    CHECK(f.disk->tickets() == std::vector<BlockDevice::FlushTicket>{1});
  }

  TEST_CASE("a client that vanishes mid-negotiation or mid-transmission does not disturb others") {
    ServerFixture f;
    for (int i = 0; i < 20; ++i) {
      RawClient c(f.socket_path());
      if (i % 2) {
        c.recv(5);  // partial greeting, then gone
      } else {
        REQUIRE(c.greet());
        REQUIRE(c.go("disk"));
        c.send_request(kCmdRead, 0, 1, 0, 1024 * 1024);  // leave without reading the reply
      }
    }
    CHECK(server_healthy(f));
  }
}

}  // namespace portalbd::nbd
