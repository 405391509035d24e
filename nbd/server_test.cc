// End-to-end tests of the NBD server with libnbd as the client: handshake,
// every option a real client sends, every command, error replies, and the
// server's lifecycle (stats, clients, stop, TCP port 0).
#include <doctest/doctest.h>
#include <libnbd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "nbd/testing/fixture.h"

namespace portalbd::nbd {
namespace {

using testing::kDiskSize;
using testing::kRoSize;
using testing::NbdHandle;
using testing::pattern;
using testing::ServerFixture;

int list_cb(void* user, const char* name, const char* description) {
  static_cast<std::vector<std::pair<std::string, std::string>>*>(user)->emplace_back(name, description);
  return 0;
}

}  // namespace

TEST_SUITE("nbd.server") {
  TEST_CASE("start logs nothing fatal and rejects a second start") {
    ServerFixture f;
    REQUIRE(f.start_status.ok());
    CHECK_FALSE(f.server->start().ok());
    CHECK(f.server->tcp_address().empty());
  }

  TEST_CASE("TCP listener with port 0 resolves the bound port") {
    testing::TempDir dir;
    testing::MemoryExports exports;
    exports.add("disk", std::make_shared<testing::MemoryDevice>(1 << 20));
    ServerOptions o;
    o.tcp_address = "127.0.0.1:0";
    Server server(exports, o);
    REQUIRE(server.start().ok());
    std::string addr = server.tcp_address();
    REQUIRE(addr.rfind("127.0.0.1:", 0) == 0);
    std::string port = addr.substr(addr.find(':') + 1);
    CHECK(port != "0");
    NbdHandle h(nbd_create());
    nbd_set_export_name(h.get(), "disk");
    REQUIRE(nbd_connect_tcp(h.get(), "127.0.0.1", port.c_str()) == 0);
    CHECK(nbd_get_size(h.get()) == (1 << 20));

    // The same address again is refused with a message naming it.
    ServerOptions o2;
    o2.tcp_address = addr;
    Server second(exports, o2);
    Status st = second.start();
    CHECK_FALSE(st.ok());
    CHECK(st.message().find("bind " + addr) != std::string::npos);
    CHECK(st.message().find("in use") != std::string::npos);
  }

  TEST_CASE("a live unix socket is not stolen by a second server") {
    ServerFixture f;
    REQUIRE(f.start_status.ok());
    ServerOptions o = ServerFixture::default_options();
    o.unix_path = f.socket_path();
    Server second(f.exports, o);
    CHECK_FALSE(second.start().ok());
  }

  TEST_CASE("GO negotiates size, flags and block sizes") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    CHECK(nbd_get_size(h.get()) == int64_t(kDiskSize));
    CHECK(nbd_is_read_only(h.get()) == 0);
    CHECK(nbd_can_flush(h.get()) == 1);
    CHECK(nbd_can_fua(h.get()) == 1);
    CHECK(nbd_can_trim(h.get()) == 1);
    CHECK(nbd_can_zero(h.get()) == 1);
    CHECK(nbd_can_fast_zero(h.get()) == 1);
    CHECK(nbd_can_cache(h.get()) == 1);
    CHECK(nbd_can_multi_conn(h.get()) == 1);
    CHECK(nbd_can_df(h.get()) == 1);
    CHECK(nbd_get_structured_replies_negotiated(h.get()) == 1);
    CHECK(nbd_get_block_size(h.get(), LIBNBD_SIZE_MINIMUM) == 1);
    CHECK(nbd_get_block_size(h.get(), LIBNBD_SIZE_PREFERRED) == 4096);
    CHECK(nbd_get_block_size(h.get(), LIBNBD_SIZE_MAXIMUM) == 1024 * 1024);
  }

  TEST_CASE("without structured replies DF is not advertised") {
    ServerFixture f;
    NbdHandle h = f.connect("disk", /*structured=*/false);
    REQUIRE(h);
    CHECK(nbd_can_df(h.get()) == 0);
    CHECK(nbd_get_structured_replies_negotiated(h.get()) == 0);
  }

  TEST_CASE("the empty name selects the default export") {
    ServerFixture f;
    NbdHandle h = f.connect("");
    REQUIRE(h);
    CHECK(nbd_get_size(h.get()) == int64_t(kDiskSize));
  }

  TEST_CASE("GO to an unknown export fails with a message; the client may retry") {
    ServerFixture f;
    NbdHandle h = f.connect("nope", true, /*opt_mode=*/true);
    REQUIRE(h);
    CHECK(nbd_opt_go(h.get()) == -1);
    CHECK(nbd_get_errno() == ENOENT);  // libnbd maps NBD_REP_ERR_UNKNOWN to ENOENT
    nbd_set_export_name(h.get(), "ro");
    REQUIRE(nbd_opt_go(h.get()) == 0);
    CHECK(nbd_get_size(h.get()) == int64_t(kRoSize));
  }

  TEST_CASE("EXPORT_NAME (oldest fixed-newstyle path) works and closes on unknown names") {
    ServerFixture f;
    NbdHandle h(nbd_create());
    nbd_set_export_name(h.get(), "disk");
    nbd_set_request_structured_replies(h.get(), false);
    // Without fixed newstyle, libnbd can only use NBD_OPT_EXPORT_NAME.
    nbd_set_handshake_flags(h.get(), 0);
    REQUIRE(nbd_connect_unix(h.get(), f.socket_path().c_str()) == 0);
    CHECK(nbd_get_size(h.get()) == int64_t(kDiskSize));
    auto data = pattern(4096, 3);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0) == 0);

    NbdHandle bad(nbd_create());
    nbd_set_export_name(bad.get(), "nope");
    nbd_set_handshake_flags(bad.get(), 0);
    CHECK(nbd_connect_unix(bad.get(), f.socket_path().c_str()) == -1);
  }

  TEST_CASE("NBD_OPT_LIST lists every export with its description") {
    ServerFixture f;
    NbdHandle h = f.connect("", true, /*opt_mode=*/true);
    REQUIRE(h);
    std::vector<std::pair<std::string, std::string>> seen;
    REQUIRE(nbd_opt_list(h.get(), nbd_list_callback{list_cb, &seen, nullptr}) == 2);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] == std::make_pair(std::string("disk"), std::string("the test disk")));
    CHECK(seen[1].first == "ro");
    CHECK(nbd_opt_abort(h.get()) == 0);
  }

  TEST_CASE("NBD_OPT_INFO reports name and description, then GO still works") {
    ServerFixture f;
    NbdHandle h = f.connect("", true, /*opt_mode=*/true);
    REQUIRE(h);
    nbd_set_full_info(h.get(), true);
    REQUIRE(nbd_opt_info(h.get()) == 0);
    CHECK(nbd_get_size(h.get()) == int64_t(kDiskSize));
    char* name = nbd_get_canonical_export_name(h.get());
    REQUIRE(name);
    CHECK(std::string(name) == "disk");
    free(name);
    char* description = nbd_get_export_description(h.get());
    REQUIRE(description);
    CHECK(std::string(description) == "the test disk");
    free(description);
    nbd_set_export_name(h.get(), "ro");
    REQUIRE(nbd_opt_info(h.get()) == 0);
    CHECK(nbd_is_read_only(h.get()) == 1);
    REQUIRE(nbd_opt_go(h.get()) == 0);
    CHECK(nbd_get_size(h.get()) == int64_t(kRoSize));
  }

  TEST_CASE("READ and WRITE round-trip, with and without structured replies") {
    for (bool structured : {false, true}) {
      CAPTURE(structured);
      ServerFixture f;
      NbdHandle h = f.connect("disk", structured);
      REQUIRE(h);
      auto data = pattern(256 * 1024, 9);
      REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 12345, 0) == 0);
      std::vector<std::byte> back(data.size());
      REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 12345, 0) == 0);
      CHECK(back == data);
      CHECK(f.disk->bytes(12345, data.size()) == data);
      // An unwritten region reads as zeros.
      std::vector<std::byte> zeros(8192, std::byte{1});
      REQUIRE(nbd_pread(h.get(), zeros.data(), zeros.size(), kDiskSize - 8192, 0) == 0);
      CHECK(zeros == std::vector<std::byte>(8192));
      // The last byte of the device is addressable.
      REQUIRE(nbd_pwrite(h.get(), data.data(), 1, kDiskSize - 1, 0) == 0);
    }
  }

  TEST_CASE("FUA, FLUSH, TRIM, WRITE_ZEROES and CACHE reach the device") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    auto data = pattern(65536, 1);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 0, LIBNBD_CMD_FLAG_FUA) == 0);
    CHECK(f.disk->fua_count == 1);
    REQUIRE(nbd_flush(h.get(), 0) == 0);
    CHECK(f.disk->flushes == 1);
    REQUIRE(nbd_trim(h.get(), 4096, 0, 0) == 0);
    CHECK(f.disk->trims == 1);
    REQUIRE(nbd_zero(h.get(), 4096, 8192, LIBNBD_CMD_FLAG_NO_HOLE) == 0);
    REQUIRE(nbd_zero(h.get(), 4096, 16384, LIBNBD_CMD_FLAG_FAST_ZERO | LIBNBD_CMD_FLAG_FUA) == 0);
    CHECK(f.disk->zeroes == 2);
    REQUIRE(nbd_cache(h.get(), 65536, 0, 0) == 0);
    CHECK(f.disk->prefetches == 1);
    std::vector<std::byte> back(65536);
    REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 0, 0) == 0);
    auto expect = data;
    std::fill(expect.begin(), expect.begin() + 4096, std::byte{0});
    std::fill(expect.begin() + 8192, expect.begin() + 8192 + 4096, std::byte{0});
    std::fill(expect.begin() + 16384, expect.begin() + 16384 + 4096, std::byte{0});
    CHECK(back == expect);
    ServerStats st = f.server->stats();
    CHECK(st.writes == 1);
    CHECK(st.reads == 1);
    CHECK(st.flushes == 1);
    CHECK(st.trims == 1);
    CHECK(st.zeroes == 2);
    CHECK(st.cache == 1);
    CHECK(st.bytes_written == 65536);
    CHECK(st.bytes_read == 65536);
    CHECK(st.errors == 0);
    CHECK(st.bytes_trimmed == 4096);
    CHECK(st.bytes_zeroed == 2 * 4096);
  }

  TEST_CASE("every executed request is timed under its command, and none stays in flight") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    auto data = pattern(4096, 3);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0) == 0);
    REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 4096, LIBNBD_CMD_FLAG_FUA) == 0);
    REQUIRE(nbd_flush(h.get(), 0) == 0);
    std::vector<std::byte> back(4096);
    REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 0, 0) == 0);
    REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 1ull << 40, 0) == -1);  // refused before dispatch
    // A worker records its request just after sending the reply: wait for it.
    ServerStats st;
    for (int i = 0; i < 500; ++i) {
      st = f.server->stats();
      if (st.latency[0].count() == 1 && st.latency[2].count() == 1 && st.in_flight == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    static_assert(kTimedCommands[0] == std::string_view("read") && kTimedCommands[1] == std::string_view("write") &&
                  kTimedCommands[2] == std::string_view("flush"));
    CHECK(st.latency[0].count() == 1);  // the out-of-range read never reached dispatch
    CHECK(st.latency[1].count() == 2);
    CHECK(st.latency[2].count() == 1);
    for (size_t i = 3; i < kTimedCommands.size(); ++i) CHECK(st.latency[i].count() == 0);
    CHECK(st.latency[1].sum_ns > 0);
    CHECK(st.in_flight == 0);
  }

  TEST_CASE("read-only export: flag set, writes refused with EPERM, reads work") {
    ServerFixture f;
    NbdHandle h = f.connect("ro");
    REQUIRE(h);
    CHECK(nbd_is_read_only(h.get()) == 1);
    // What cannot work is not offered (issue 24); FLUSH and CACHE are harmless.
    CHECK(nbd_can_trim(h.get()) == 0);
    CHECK(nbd_can_zero(h.get()) == 0);
    CHECK(nbd_can_fast_zero(h.get()) == 0);
    CHECK(nbd_can_fua(h.get()) == 0);
    CHECK(nbd_can_flush(h.get()) == 1);
    CHECK(nbd_can_cache(h.get()) == 1);
    nbd_set_strict_mode(h.get(), 0);
    auto data = pattern(4096, 2);
    CHECK(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0) == -1);
    CHECK(nbd_get_errno() == EPERM);
    CHECK(nbd_trim(h.get(), 4096, 0, 0) == -1);
    CHECK(nbd_get_errno() == EPERM);
    CHECK(nbd_zero(h.get(), 4096, 0, 0) == -1);
    CHECK(nbd_get_errno() == EPERM);
    std::vector<std::byte> back(4096);
    CHECK(nbd_pread(h.get(), back.data(), back.size(), 0, 0) == 0);
    CHECK(f.server->stats().errors == 3);
  }

  TEST_CASE("out-of-range and malformed requests get the spec's errors and the connection survives") {
    for (bool structured : {false, true}) {
      CAPTURE(structured);
      ServerFixture f;
      NbdHandle h = f.connect("disk", structured);
      REQUIRE(h);
      nbd_set_strict_mode(h.get(), 0);
      std::vector<std::byte> buf(8192);
      // Past the end.
      CHECK(nbd_pwrite(h.get(), buf.data(), 4096, kDiskSize - 2048, 0) == -1);
      CHECK(nbd_get_errno() == ENOSPC);
      CHECK(nbd_zero(h.get(), 4096, kDiskSize, 0) == -1);
      CHECK(nbd_get_errno() == ENOSPC);
      CHECK(nbd_pread(h.get(), buf.data(), 4096, kDiskSize - 2048, 0) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      CHECK(nbd_trim(h.get(), 4096, kDiskSize - 1, 0) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      CHECK(nbd_cache(h.get(), 4096, kDiskSize, 0) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      // Offset + length wraps around 2^64.
      CHECK(nbd_pread(h.get(), buf.data(), 4096, UINT64_MAX - 100, 0) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      // Zero length.
      CHECK(nbd_trim(h.get(), 0, 0, 0) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      // A flag the command does not take.
      CHECK(nbd_trim(h.get(), 4096, 0, LIBNBD_CMD_FLAG_REQ_ONE) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      // Longer than max_request_bytes (1 MiB here): the oversized write's
      // payload is discarded so the stream stays in sync.
      std::vector<std::byte> big(1024 * 1024 + 4096);
      CHECK(nbd_pread(h.get(), big.data(), big.size(), 0, 0) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      CHECK(nbd_pwrite(h.get(), big.data(), big.size(), 0, 0) == -1);
      CHECK(nbd_get_errno() == EINVAL);
      // Still in sync.
      auto data = pattern(4096, 5);
      REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0) == 0);
      REQUIRE(nbd_pread(h.get(), buf.data(), 4096, 0, 0) == 0);
      CHECK(std::memcmp(buf.data(), data.data(), 4096) == 0);
      CHECK(f.server->stats().errors == 10);
    }
  }

  TEST_CASE("device errors map to errno; a failed read sends no data") {
    for (bool structured : {false, true}) {
      CAPTURE(structured);
      ServerFixture f;
      NbdHandle h = f.connect("disk", structured);
      REQUIRE(h);
      std::vector<std::byte> buf(4096);
      // Data, not a hole: a structured READ of a hole never calls the device.
      REQUIRE(nbd_pwrite(h.get(), buf.data(), buf.size(), 0, 0) == 0);
      f.disk->fail_next(Status::IOError("injected"));
      CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == -1);
      CHECK(nbd_get_errno() == EIO);
      f.disk->fail_next(Status::NoSpace("quota"));
      CHECK(nbd_pwrite(h.get(), buf.data(), buf.size(), 0, 0) == -1);
      CHECK(nbd_get_errno() == ENOSPC);
      f.disk->fail_next(Status::Unavailable("s3 down"));
      CHECK(nbd_flush(h.get(), 0) == -1);
      CHECK(nbd_get_errno() == EIO);
      f.disk->fail_next(Status::NotSupported("no"));
      CHECK(nbd_trim(h.get(), 4096, 0, 0) == -1);
      CHECK(nbd_get_errno() == ENOTSUP);
      // The connection is still usable.
      CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == 0);
    }
  }

  TEST_CASE("several connections share the device") {
    ServerFixture f;
    NbdHandle a = f.connect("disk");
    NbdHandle b = f.connect("disk", false);
    REQUIRE(a);
    REQUIRE(b);
    auto data = pattern(4096, 11);
    REQUIRE(nbd_pwrite(a.get(), data.data(), data.size(), 8192, 0) == 0);
    REQUIRE(nbd_flush(a.get(), 0) == 0);
    std::vector<std::byte> back(4096);
    REQUIRE(nbd_pread(b.get(), back.data(), back.size(), 8192, 0) == 0);
    CHECK(back == data);
    auto clients = f.server->clients();
    CHECK(clients.size() == 2);
    for (const ClientInfo& c : clients) {
      CHECK(c.export_name == "disk");
      CHECK(c.peer.rfind("unix", 0) == 0);
      CHECK(c.connected_unix_ms > 0);
    }
    ServerStats st = f.server->stats();
    CHECK(st.connections_total == 2);
    CHECK(st.connections_active == 2);
  }

  TEST_CASE("shutdown by the client ends the connection cleanly") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    REQUIRE(nbd_shutdown(h.get(), 0) == 0);
    h.reset();
    for (int i = 0; i < 200 && f.server->stats().connections_active != 0; ++i) usleep(5000);
    CHECK(f.server->stats().connections_active == 0);
    CHECK(f.server->clients().empty());
  }

  TEST_CASE("a client that never finishes the handshake is dropped after the timeout") {
    ServerOptions o = ServerFixture::default_options();
    o.handshake_timeout_ms = 200;
    ServerFixture f(o);
    testing::RawClient idle(f.socket_path());
    REQUIRE(idle.greet());
    CHECK(idle.closed_by_server());
    // A connection in transmission is not subject to it.
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    usleep(400 * 1000);
    std::vector<std::byte> buf(512);
    CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == 0);
  }

  TEST_CASE("stop() closes idle connections, joins, and is idempotent") {
    ServerFixture f;
    NbdHandle h = f.connect("disk");
    REQUIRE(h);
    NbdHandle negotiating = f.connect("", true, /*opt_mode=*/true);
    REQUIRE(negotiating);
    f.server->stop();
    f.server->stop();
    CHECK(f.server->stats().connections_active == 0);
    std::vector<std::byte> buf(512);
    CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == -1);
    // The socket file is gone and nobody accepts.
    CHECK(access(f.socket_path().c_str(), F_OK) != 0);
  }
}

}  // namespace portalbd::nbd
