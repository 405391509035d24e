// Test fixture for the NBD server: a Server on a unix socket in a fresh temp
// dir, serving in-memory exports, plus a raw-socket client for traffic a real
// client would never send, and an RAII libnbd handle.
//
// Exports: "disk" (8 MiB, writable, the default), "ro" (1 MiB, read-only).
// Header-only (only tests include it). Not thread-safe: one test thread.
#pragma once

#include <libnbd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nbd/protocol.h"
#include "nbd/server.h"
#include "nbd/socket_io.h"
#include "nbd/testing/memory_device.h"
#include "nbd/wire.h"
#include "src/util/fd.h"

namespace portalbd::nbd::testing {

inline constexpr uint64_t kDiskSize = 8 * 1024 * 1024;
inline constexpr uint64_t kRoSize = 1024 * 1024;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/pbd-nbd-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

struct NbdHandleDeleter {
  void operator()(struct nbd_handle* h) const { nbd_close(h); }
};
using NbdHandle = std::unique_ptr<struct nbd_handle, NbdHandleDeleter>;

class ServerFixture {
 public:
  explicit ServerFixture(ServerOptions options = default_options()) {
    disk = std::make_shared<MemoryDevice>(kDiskSize);
    ro = std::make_shared<MemoryDevice>(kRoSize, /*read_only=*/true);
    exports.add("disk", disk, "the test disk");
    exports.add("ro", ro, "");
    options.unix_path = socket_path();
    server = std::make_unique<Server>(exports, options);
    start_status = server->start();
  }

  static ServerOptions default_options() {
    ServerOptions o;
    o.tcp_address = "";
    o.max_request_bytes = 1024 * 1024;
    return o;
  }
  std::string socket_path() const { return dir.path + "/nbd.sock"; }

  // A libnbd handle, connected to `export_name` unless opt_mode is set.
  NbdHandle connect(const std::string& export_name = "disk", bool structured = true, bool opt_mode = false,
                    bool base_allocation = false) {
    NbdHandle h(nbd_create());
    nbd_set_export_name(h.get(), export_name.c_str());
    nbd_set_request_structured_replies(h.get(), structured);
    if (base_allocation) nbd_add_meta_context(h.get(), "base:allocation");
    if (opt_mode) nbd_set_opt_mode(h.get(), true);
    if (nbd_connect_unix(h.get(), socket_path().c_str()) != 0) return nullptr;
    return h;
  }

  TempDir dir;
  std::shared_ptr<MemoryDevice> disk, ro;
  MemoryExports exports;
  std::unique_ptr<Server> server;
  Status start_status;
};

// A client that speaks raw bytes. Every read has a timeout so a server bug
// fails the test instead of hanging it.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    connected_ = ::connect(fd_.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0;
    struct timeval tv {
      5, 0
    };
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_.get(); }

  bool send(const WireWriter& w) { return send_all(fd_.get(), w.data()).ok(); }
  bool send_bytes(const std::vector<std::byte>& b) { return send_all(fd_.get(), b).ok(); }
  // Reads n bytes; empty when the stream ended (or timed out) first.
  std::vector<std::byte> recv(size_t n) {
    std::vector<std::byte> b(n);
    if (read_exact(fd_.get(), b) != ReadResult::kOk) return {};
    return b;
  }
  // True when the server closed the connection within the timeout: EOF, or
  // a reset (closing with unread input makes the kernel send one).
  bool closed_by_server() {
    std::byte b;
    ssize_t n = ::recv(fd_.get(), &b, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  // Reads the greeting, sends client flags. True when the greeting was right.
  bool greet(uint32_t client_flags = proto::kClientFlagFixedNewstyle | proto::kClientFlagNoZeroes) {
    auto g = recv(18);
    if (g.size() != 18 || load_be64(g.data()) != proto::kNbdMagic || load_be64(g.data() + 8) != proto::kOptionMagic)
      return false;
    handshake_flags = load_be16(g.data() + 16);
    WireWriter w;
    w.u32(client_flags);
    return send(w);
  }
  void send_option(uint32_t option, const std::vector<std::byte>& payload, uint64_t magic = proto::kOptionMagic) {
    WireWriter w;
    w.u64(magic).u32(option).u32(static_cast<uint32_t>(payload.size()));
    w.data().insert(w.data().end(), payload.begin(), payload.end());
    send(w);
  }
  struct OptionReply {
    bool ok = false;
    uint32_t option = 0, type = 0;
    std::vector<std::byte> payload;
  };
  OptionReply read_option_reply() {
    OptionReply r;
    auto h = recv(20);
    if (h.size() != 20 || load_be64(h.data()) != proto::kOptionReplyMagic) return r;
    r.option = load_be32(h.data() + 8);
    r.type = load_be32(h.data() + 12);
    uint32_t len = load_be32(h.data() + 16);
    r.payload = recv(len);
    r.ok = r.payload.size() == len;
    return r;
  }
  static std::vector<std::byte> go_payload(const std::string& name) {
    WireWriter w;
    w.u32(static_cast<uint32_t>(name.size())).bytes(name).u16(0);
    return w.data();
  }
  // NBD_OPT_GO; true when it ended in ACK (INFO replies are skipped).
  bool go(const std::string& name) {
    send_option(proto::kOptGo, go_payload(name));
    for (;;) {
      OptionReply r = read_option_reply();
      if (!r.ok) return false;
      if (r.type == proto::kRepInfo) continue;
      return r.type == proto::kRepAck;
    }
  }
  void send_request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length,
                    uint32_t magic = proto::kRequestMagic) {
    WireWriter w;
    w.u32(magic).u16(flags).u16(type).u64(cookie).u64(offset).u32(length);
    send(w);
  }
  struct SimpleReply {
    bool ok = false;
    uint32_t error = 0;
    uint64_t cookie = 0;
  };
  SimpleReply read_simple_reply() {
    SimpleReply r;
    auto h = recv(16);
    if (h.size() != 16 || load_be32(h.data()) != proto::kSimpleReplyMagic) return r;
    r.ok = true;
    r.error = load_be32(h.data() + 4);
    r.cookie = load_be64(h.data() + 8);
    return r;
  }

  uint16_t handshake_flags = 0;

 private:
  UniqueFd fd_;
  bool connected_ = false;
};

inline std::vector<std::byte> pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(seed + i * 7 + (i >> 9)));
  return v;
}

}  // namespace portalbd::nbd::testing
