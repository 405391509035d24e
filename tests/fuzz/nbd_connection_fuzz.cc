// libFuzzer target: the NBD handshake and transmission-phase request parser
// (DESIGN invariant 7: malformed NBD traffic gets a defined answer, never a
// crash). The input is the byte stream a client sends; it is fed through one
// end of a socketpair to a real nbd::Connection serving in-memory devices
// (nbd/testing/memory_device.h), whose replies are read and dropped.
//
// Input layout: the first byte picks the mode.
//   even: the rest is the whole client stream, from the client flags on.
//   odd:  a canned handshake (fixed newstyle, NO_ZEROES, structured replies,
//         base:allocation, NBD_OPT_GO "disk" or "ro") is sent first and the
//         rest is transmission-phase traffic, so the fuzzer spends its time on
//         request headers, payloads and command/flag combinations.
// Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nbd/connection.h"
#include "nbd/protocol.h"
#include "nbd/testing/memory_device.h"
#include "src/log/log.h"

using namespace portalbd;
using namespace portalbd::nbd;

namespace {

void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int i = 3; i >= 0; --i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
void put64(std::vector<uint8_t>& v, uint64_t x) {
  for (int i = 7; i >= 0; --i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
void option(std::vector<uint8_t>& v, uint32_t opt, const std::vector<uint8_t>& payload) {
  put64(v, proto::kOptionMagic);
  put32(v, opt);
  put32(v, static_cast<uint32_t>(payload.size()));
  v.insert(v.end(), payload.begin(), payload.end());
}

std::vector<uint8_t> canned_handshake(bool read_only) {
  std::vector<uint8_t> v;
  put32(v, proto::kClientFlagFixedNewstyle | proto::kClientFlagNoZeroes);
  option(v, proto::kOptStructuredReply, {});
  std::vector<uint8_t> meta;
  const std::string exp = read_only ? "ro" : "disk";
  const std::string ctx = "base:allocation";
  put32(meta, static_cast<uint32_t>(exp.size()));
  meta.insert(meta.end(), exp.begin(), exp.end());
  put32(meta, 1);
  put32(meta, static_cast<uint32_t>(ctx.size()));
  meta.insert(meta.end(), ctx.begin(), ctx.end());
  option(v, proto::kOptSetMetaContext, meta);
  std::vector<uint8_t> go;
  put32(go, static_cast<uint32_t>(exp.size()));
  go.insert(go.end(), exp.begin(), exp.end());
  go.push_back(0);
  go.push_back(0);  // no info requests
  option(v, proto::kOptGo, go);
  return v;
}

struct World {
  testing::MemoryExports exports;
  ServerOptions options;
  StatsCounters stats;
  PayloadBudget payload_budget{4 << 20, 256 << 10};  // overshoot: max_request_bytes below
  World() {
    // "disk" serves reads and FLUSH from memory, as memory:// does, so its
    // requests run on the reader thread with held replies; "ro" takes the
    // worker path.
    auto disk = std::make_shared<testing::MemoryDevice>(1 << 20);
    disk->memory_reads = true;
    disk->free_flush = true;
    exports.add("disk", disk, "fuzz disk");
    exports.add("ro", std::make_shared<testing::MemoryDevice>(64 << 10, /*read_only=*/true), "");
    options.tcp_address = "";
    options.max_request_bytes = 256 << 10;
    options.workers_per_connection = 2;
    options.max_inflight_bytes = 1 << 20;
    options.handshake_timeout_ms = 2000;
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)log::init("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();
  if (size == 0) return 0;
  std::vector<uint8_t> stream;
  if (data[0] & 1) stream = canned_handshake(data[0] & 2);
  stream.insert(stream.end(), data + 1, data + size);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  std::thread client_writer([fd = sv[1], &stream] {
    size_t off = 0;
    while (off < stream.size()) {
      ssize_t n = ::send(fd, stream.data() + off, stream.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
  });
  std::thread client_reader([fd = sv[1]] {
    char buf[65536];
    while (::recv(fd, buf, sizeof buf, 0) > 0) {
    }
  });
  {
    Connection conn(UniqueFd(sv[0]), "fuzz", world->exports, world->options, world->stats, world->payload_budget);
    conn.run();
  }
  client_writer.join();
  ::shutdown(sv[1], SHUT_RDWR);
  client_reader.join();
  ::close(sv[1]);
  return 0;
}
