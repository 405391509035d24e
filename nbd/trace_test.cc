// Unit tests for request traces (nbd/trace.h): the line format, the
// recorder under concurrent writers, and a server with tracing on, driven by
// libnbd, whose trace must list exactly the requests it answered.
#include "nbd/trace.h"

#include <doctest/doctest.h>
#include <libnbd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nbd/protocol.h"
#include "nbd/testing/fixture.h"

namespace portalbd::nbd {
namespace {

struct TraceFile {
  std::vector<std::string> header;  // the first line and the comments
  std::vector<TraceRecord> records;
  size_t malformed = 0;
};

TraceFile read_trace(const std::string& path) {
  TraceFile t;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    TraceRecord r;
    if (parse_trace_line(line, &r)) {
      t.records.push_back(r);
    } else if (is_trace_header(line) || line.starts_with("#")) {
      t.header.push_back(line);
    } else {
      ++t.malformed;
    }
  }
  return t;
}

}  // namespace

TEST_SUITE("nbd.trace") {
  TEST_CASE("a line round-trips through format and parse") {
    TraceRecord r{7,      proto::kCmdWriteZeroes, proto::kCmdFlagFua | proto::kCmdFlagNoHole, 1ull << 40, 65536, 123,
                  456789, proto::kEnospc};
    std::string line = format_trace_line(r);
    CHECK(line == "7 WRITE_ZEROES 1099511627776 65536 3 123 456789 28\n");
    TraceRecord back;
    REQUIRE(parse_trace_line(std::string_view(line).substr(0, line.size() - 1), &back));
    CHECK(back.conn == 7);
    CHECK(back.type == proto::kCmdWriteZeroes);
    CHECK(back.flags == 3);
    CHECK(back.offset == 1ull << 40);
    CHECK(back.length == 65536);
    CHECK(back.t_recv_us == 123);
    CHECK(back.t_done_us == 456789);
    CHECK(back.error == proto::kEnospc);

    // Unknown commands keep their number.
    r.type = 42;
    CHECK(format_trace_line(r).starts_with("7 CMD42 "));
    REQUIRE(parse_trace_line("1 CMD42 0 0 0 0 0 0", &back));
    CHECK(back.type == 42);
  }

  TEST_CASE("malformed lines, comments and headers are not requests") {
    TraceRecord r;
    CHECK_FALSE(parse_trace_line("", &r));
    CHECK_FALSE(parse_trace_line("# conn op offset", &r));
    CHECK_FALSE(parse_trace_line("portalbd-nbd-trace v1 start_unix_ms=1", &r));
    CHECK_FALSE(parse_trace_line("1 READ 0 4096 0 1 2", &r));          // a field short
    CHECK_FALSE(parse_trace_line("1 READ 0 4096 0 1 2 0 9", &r));      // a field too many
    CHECK_FALSE(parse_trace_line("1 READX 0 4096 0 1 2 0", &r));       // unknown op name
    CHECK_FALSE(parse_trace_line("1 READ -1 4096 0 1 2 0", &r));       // negative offset
    CHECK_FALSE(parse_trace_line("1 READ 0 4294967296 0 1 2 0", &r));  // length past 32 bits
    CHECK(is_trace_header("portalbd-nbd-trace v1 start_unix_ms=1"));
    CHECK(is_trace_header("portalbd-nbd-trace v1"));
    CHECK_FALSE(is_trace_header("portalbd-nbd-trace v2"));
    CHECK_FALSE(is_trace_header("portalbd-nbd-trace v10"));
  }

  TEST_CASE("records from many threads all reach the file, after a header") {
    testing::TempDir dir;
    const std::string path = dir.path + "/trace";
    auto opened = TraceRecorder::Open(path);
    REQUIRE(opened.ok());
    std::shared_ptr<TraceRecorder> rec = *opened;
    constexpr int kThreads = 4, kPerThread = 20000;  // well past kWakeBytes
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        uint32_t conn = rec->new_connection();
        for (int i = 0; i < kPerThread; ++i) {
          uint64_t now = rec->now_us();
          rec->record(TraceRecord{conn, proto::kCmdRead, 0, uint64_t(i) * 4096, 4096, now, now, 0});
        }
        (void)t;
      });
    }
    for (auto& th : threads) th.join();
    REQUIRE(rec->close().ok());
    CHECK(rec->close().ok());    // idempotent
    rec->record(TraceRecord{});  // after close: ignored

    TraceFile t = read_trace(path);
    REQUIRE(t.header.size() == 2);
    CHECK(is_trace_header(t.header[0]));
    CHECK(t.malformed == 0);
    CHECK(rec->dropped() == 0);
    REQUIRE(t.records.size() == size_t(kThreads) * kPerThread);
    std::set<std::pair<uint32_t, uint64_t>> seen;
    for (const TraceRecord& r : t.records) {
      CHECK(r.t_done_us >= r.t_recv_us);
      seen.emplace(r.conn, r.offset);
    }
    CHECK(seen.size() == t.records.size());
    std::set<uint32_t> conns;
    for (auto [c, o] : seen) conns.insert(c);
    CHECK(conns == std::set<uint32_t>{1, 2, 3, 4});
  }

  TEST_CASE("Open fails with the path in the message") {
    auto opened = TraceRecorder::Open("/nonexistent-dir/trace");
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().ToString().find("/nonexistent-dir/trace") != std::string::npos);
  }

  TEST_CASE("a traced server records every answered request, refused ones included") {
    testing::TempDir dir;
    const std::string path = dir.path + "/trace";
    auto opened = TraceRecorder::Open(path);
    REQUIRE(opened.ok());
    ServerOptions o = testing::ServerFixture::default_options();
    o.trace = *opened;
    {
      testing::ServerFixture f(o);
      REQUIRE(f.start_status.ok());
      testing::NbdHandle h = f.connect("disk", /*structured=*/true);
      REQUIRE(h);
      std::vector<std::byte> buf = testing::pattern(8192, 3);
      REQUIRE(nbd_pwrite(h.get(), buf.data(), 8192, 65536, LIBNBD_CMD_FLAG_FUA) == 0);
      REQUIRE(nbd_pread(h.get(), buf.data(), 4096, 0, 0) == 0);
      REQUIRE(nbd_flush(h.get(), 0) == 0);
      REQUIRE(nbd_trim(h.get(), 4096, 131072, 0) == 0);
      REQUIRE(nbd_zero(h.get(), 8192, 196608, 0) == 0);
      // Past the end: refused by validation, answered with ENOSPC.
      nbd_set_strict_mode(h.get(), 0);
      CHECK(nbd_pwrite(h.get(), buf.data(), 4096, testing::kDiskSize, 0) == -1);
      REQUIRE(nbd_shutdown(h.get(), 0) == 0);
      f.server->stop();
    }
    REQUIRE(o.trace->close().ok());

    TraceFile t = read_trace(path);
    CHECK(t.malformed == 0);
    REQUIRE(t.records.size() == 7);
    // Lines are in answer order, which may differ from arrival order by a
    // hair (two workers); sorted by arrival they are the client's order.
    std::sort(t.records.begin(), t.records.end(),
              [](const TraceRecord& a, const TraceRecord& b) { return a.t_recv_us < b.t_recv_us; });
    struct Want {
      uint16_t type;
      uint64_t offset;
      uint32_t length;
      uint16_t flags;
      uint32_t error;
    };
    const Want want[] = {{proto::kCmdWrite, 65536, 8192, proto::kCmdFlagFua, 0},
                         {proto::kCmdRead, 0, 4096, 0, 0},
                         {proto::kCmdFlush, 0, 0, 0, 0},
                         {proto::kCmdTrim, 131072, 4096, 0, 0},
                         {proto::kCmdWriteZeroes, 196608, 8192, 0, 0},
                         {proto::kCmdWrite, testing::kDiskSize, 4096, 0, proto::kEnospc},
                         {proto::kCmdDisc, 0, 0, 0, 0}};
    uint64_t last_done = 0;
    for (size_t i = 0; i < 7; ++i) {
      CAPTURE(i);
      const TraceRecord& r = t.records[i];
      CHECK(r.conn == 1);
      CHECK(r.type == want[i].type);
      CHECK(r.offset == want[i].offset);
      CHECK(r.length == want[i].length);
      CHECK(r.flags == want[i].flags);
      CHECK(r.error == want[i].error);
      CHECK(r.t_done_us >= r.t_recv_us);
      // A synchronous client sends after reading the previous reply, and the
      // reply time is taken before it is written.
      CHECK(r.t_recv_us >= last_done);
      last_done = r.t_done_us;
    }
  }
}

}  // namespace portalbd::nbd
