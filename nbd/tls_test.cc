// NBD over TLS at the protocol level (issue 25): the STARTTLS ordering and
// downgrade rules over raw sockets, with an OpenSSL PSK client for the part
// after STARTTLS; and the PSK file parser. The real clients (nbdinfo,
// nbdcopy, qemu-io over nbds://) are tests/integration/test_tls.sh's.
#include "nbd/tls.h"

#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "nbd/psk_file.h"
#include "nbd/testing/fixture.h"

namespace portalbd::nbd {
namespace {

using namespace proto;
using testing::RawClient;
using testing::ServerFixture;

constexpr const char* kIdentity = "alice";
constexpr const char* kKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// A fixture whose server runs TLS in `mode` with one PSK (alice).
struct TlsFixture {
  explicit TlsFixture(TlsMode mode, uint32_t handshake_timeout_ms = 5000)
      : psk_dir(), fixture(options(mode, psk_dir.path, handshake_timeout_ms)) {
    // The server sends with MSG_NOSIGNAL; the daemon ignores SIGPIPE all the
    // same, and so does the test binary (the clients here write too).
    std::signal(SIGPIPE, SIG_IGN);
  }
  static ServerOptions options(TlsMode mode, const std::string& dir, uint32_t handshake_timeout_ms) {
    std::ofstream(dir + "/keys.psk") << "# test keys\n" << kIdentity << ":" << kKeyHex << "\nbob:0123\n";
    ServerOptions o = ServerFixture::default_options();
    o.tls.mode = mode;
    o.tls.psk_file = dir + "/keys.psk";
    o.handshake_timeout_ms = handshake_timeout_ms;
    return o;
  }
  testing::TempDir psk_dir;  // before fixture: the key file must exist when the server starts
  ServerFixture fixture;
};

// A libnbd client of t's server over TLS with alice's PSK; null when it
// could not connect.
testing::NbdHandle connect_psk(const TlsFixture& t) {
  testing::NbdHandle h(nbd_create());
  nbd_set_export_name(h.get(), "disk");
  nbd_set_tls(h.get(), LIBNBD_TLS_REQUIRE);
  nbd_set_tls_psk_file(h.get(), (t.psk_dir.path + "/keys.psk").c_str());
  nbd_set_tls_username(h.get(), kIdentity);
  if (nbd_connect_unix(h.get(), t.fixture.socket_path().c_str()) != 0) return nullptr;
  return h;
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

unsigned int client_psk(SSL*, const char*, char* identity, unsigned int max_identity_len, unsigned char* psk,
                        unsigned int max_psk_len) {
  std::snprintf(identity, max_identity_len, "%s", kIdentity);
  auto key = parse_psk_file(std::string("x:") + kKeyHex);
  const auto& bytes = key->begin()->second;
  if (bytes.size() > max_psk_len) return 0;
  std::memcpy(psk, bytes.data(), bytes.size());
  return static_cast<unsigned int>(bytes.size());
}

// The client side of TLS on a RawClient's socket, after STARTTLS was acked:
// option and request framing as RawClient's, through SSL.
class TlsClient {
 public:
  // Runs the handshake; ok() says whether it succeeded.
  explicit TlsClient(int fd) : ctx_(SSL_CTX_new(TLS_client_method())) {
    SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_3_VERSION);
    SSL_CTX_set_psk_client_callback(ctx_.get(), client_psk);
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd);
    ok_ = SSL_connect(ssl_.get()) == 1;
    ERR_clear_error();
  }
  bool ok() const { return ok_; }
  // Sends a TLS 1.3 KeyUpdate asking the server to update its keys too.
  bool key_update() {
    return SSL_key_update(ssl_.get(), SSL_KEY_UPDATE_REQUESTED) == 1 && SSL_do_handshake(ssl_.get()) == 1;
  }
  bool send(const WireWriter& w) {
    size_t n = 0;
    return SSL_write_ex(ssl_.get(), w.data().data(), w.size(), &n) == 1 && n == w.size();
  }
  std::vector<std::byte> recv(size_t len) {
    std::vector<std::byte> b(len);
    size_t done = 0;
    while (done < len) {
      size_t n = 0;
      if (SSL_read_ex(ssl_.get(), b.data() + done, len - done, &n) != 1) return {};
      done += n;
    }
    return b;
  }
  void send_option(uint32_t option, const std::vector<std::byte>& payload) {
    WireWriter w;
    w.u64(kOptionMagic).u32(option).u32(static_cast<uint32_t>(payload.size()));
    w.data().insert(w.data().end(), payload.begin(), payload.end());
    send(w);
  }
  RawClient::OptionReply read_option_reply() {
    RawClient::OptionReply r;
    auto h = recv(20);
    if (h.size() != 20 || load_be64(h.data()) != kOptionReplyMagic) return r;
    r.option = load_be32(h.data() + 8);
    r.type = load_be32(h.data() + 12);
    const uint32_t len = load_be32(h.data() + 16);
    r.payload = len > 0 ? recv(len) : std::vector<std::byte>{};
    r.ok = r.payload.size() == len;
    return r;
  }
  // The last reply to an option that answers several (INFO..., then ACK).
  uint32_t final_reply_type(uint32_t option, const std::vector<std::byte>& payload) {
    send_option(option, payload);
    for (;;) {
      auto r = read_option_reply();
      if (!r.ok) return 0;
      if (r.type != kRepInfo && r.type != kRepServer && r.type != kRepMetaContext) return r.type;
    }
  }

 private:
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx_;
  std::unique_ptr<SSL, SslDeleter> ssl_;
  bool ok_ = false;
};

// A transmission request header (flags 0), to send through a TlsClient; a
// write's payload is appended to its data().
WireWriter request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length) {
  WireWriter w;
  w.u32(kRequestMagic).u16(0).u16(type).u64(cookie).u64(offset).u32(length);
  return w;
}

// Greets, sends STARTTLS, expects the ACK.
bool starttls(RawClient& c) {
  if (!c.greet()) return false;
  c.send_option(kOptStartTls, {});
  auto r = c.read_option_reply();
  return r.ok && r.option == kOptStartTls && r.type == kRepAck;
}

std::vector<std::byte> meta_payload(const std::string& export_name, const std::string& query) {
  WireWriter w;
  w.u32(static_cast<uint32_t>(export_name.size())).bytes(export_name).u32(1);
  w.u32(static_cast<uint32_t>(query.size())).bytes(query);
  return w.data();
}

}  // namespace

TEST_SUITE("nbd.tls") {
  TEST_CASE("tls require: every option before STARTTLS but ABORT gets ERR_TLS_REQD, EXPORT_NAME closes") {
    TlsFixture t(TlsMode::kRequire);
    REQUIRE(t.fixture.start_status.ok());
    RawClient c(t.fixture.socket_path());
    REQUIRE(c.greet());
    const std::vector<std::pair<uint32_t, std::vector<std::byte>>> options = {
        {kOptList, {}},
        {kOptInfo, RawClient::go_payload("disk")},
        {kOptGo, RawClient::go_payload("disk")},
        {kOptStructuredReply, {}},
        {kOptListMetaContext, meta_payload("disk", "base:allocation")},
        {kOptSetMetaContext, meta_payload("disk", "base:allocation")},
        {kOptExtendedHeaders, {}},
        {4242, {std::byte{1}, std::byte{2}}},  // unknown: still TLS_REQD, not UNSUP
    };
    for (const auto& [option, payload] : options) {
      CAPTURE(option);
      c.send_option(option, payload);
      auto r = c.read_option_reply();
      REQUIRE(r.ok);
      CHECK(r.option == option);
      CHECK(r.type == kRepErrTlsReqd);
    }
    // No export was served in the clear: GO never entered transmission.
    c.send_request(kCmdRead, 0, 1, 0, 512);
    auto after = c.read_option_reply();  // the "request" is read as a broken option: the server hangs up
    CHECK_FALSE(after.ok);

    RawClient e(t.fixture.socket_path());
    REQUIRE(e.greet());
    e.send_option(kOptExportName, {std::byte{'d'}, std::byte{'i'}, std::byte{'s'}, std::byte{'k'}});
    CHECK(e.closed_by_server());

    RawClient a(t.fixture.socket_path());
    REQUIRE(a.greet());
    a.send_option(kOptAbort, {});
    auto ack = a.read_option_reply();
    CHECK(ack.ok);
    CHECK(ack.type == kRepAck);
  }

  TEST_CASE(
      "tls require: STARTTLS with data is ERR_INVALID; inside TLS the options work, a second STARTTLS is "
      "ERR_INVALID, and the export is served") {
    TlsFixture t(TlsMode::kRequire);
    REQUIRE(t.fixture.start_status.ok());
    RawClient c(t.fixture.socket_path());
    REQUIRE(c.greet());
    c.send_option(kOptStartTls, {std::byte{0}});
    auto with_data = c.read_option_reply();
    REQUIRE(with_data.ok);
    CHECK(with_data.type == kRepErrInvalid);

    c.send_option(kOptStartTls, {});
    auto ack = c.read_option_reply();
    REQUIRE(ack.ok);
    REQUIRE(ack.type == kRepAck);
    TlsClient tls(c.fd());
    REQUIRE(tls.ok());

    CHECK(tls.final_reply_type(kOptList, {}) == kRepAck);
    CHECK(tls.final_reply_type(kOptStartTls, {}) == kRepErrInvalid);
    CHECK(tls.final_reply_type(kOptStructuredReply, {}) == kRepAck);
    CHECK(tls.final_reply_type(kOptGo, RawClient::go_payload("disk")) == kRepAck);

    // Transmission through TLS: a write, then a read of it.
    auto data = testing::pattern(4096, 9);
    WireWriter w = request(kCmdWrite, 7, 8192, 4096);
    w.data().insert(w.data().end(), data.begin(), data.end());
    REQUIRE(tls.send(w));
    auto reply = tls.recv(16);
    REQUIRE(reply.size() == 16);
    CHECK(load_be32(reply.data()) == kSimpleReplyMagic);
    CHECK(load_be32(reply.data() + 4) == 0);
    CHECK(load_be64(reply.data() + 8) == 7);
    std::vector<std::byte> stored(4096);
    REQUIRE(t.fixture.disk->read(8192, stored).ok());
    CHECK(stored == data);
  }

  TEST_CASE("tls on: plaintext clients are served, and state negotiated before STARTTLS does not carry over") {
    TlsFixture t(TlsMode::kOn);
    REQUIRE(t.fixture.start_status.ok());
    {
      RawClient plain(t.fixture.socket_path());
      REQUIRE(plain.greet());
      CHECK(plain.go("disk"));
    }
    RawClient c(t.fixture.socket_path());
    REQUIRE(c.greet());
    c.send_option(kOptStructuredReply, {});
    auto sr = c.read_option_reply();
    REQUIRE(sr.ok);
    REQUIRE(sr.type == kRepAck);
    c.send_option(kOptStartTls, {});
    auto ack = c.read_option_reply();
    REQUIRE(ack.type == kRepAck);
    TlsClient tls(c.fd());
    REQUIRE(tls.ok());
    // Structured replies were negotiated in the clear only: metadata
    // contexts, which need them, are refused until negotiated again.
    CHECK(tls.final_reply_type(kOptSetMetaContext, meta_payload("disk", "base:allocation")) == kRepErrInvalid);
    CHECK(tls.final_reply_type(kOptStructuredReply, {}) == kRepAck);
    CHECK(tls.final_reply_type(kOptSetMetaContext, meta_payload("disk", "base:allocation")) == kRepAck);
  }

  TEST_CASE("tls: a failed handshake closes that connection only; the server keeps serving TLS clients") {
    TlsFixture t(TlsMode::kRequire);
    REQUIRE(t.fixture.start_status.ok());
    {
      RawClient c(t.fixture.socket_path());
      REQUIRE(starttls(c));
      // Not a ClientHello: the TLS handshake fails on the server.
      WireWriter junk;
      junk.u64(kOptionMagic).u32(kOptList).u32(0);
      c.send(junk);
      CHECK(c.closed_by_server());
    }
    {
      RawClient c(t.fixture.socket_path());
      REQUIRE(starttls(c));
      // The client hangs up instead of starting TLS.
    }
    RawClient c(t.fixture.socket_path());
    REQUIRE(starttls(c));
    TlsClient tls(c.fd());
    REQUIRE(tls.ok());
    CHECK(tls.final_reply_type(kOptGo, RawClient::go_payload("disk")) == kRepAck);
  }

  TEST_CASE("tls: many requests in flight over one TLS connection, answered out of order by the workers") {
    // The reader thread reads while worker threads write replies through the
    // same SSL object (nbd/tls.h: non-blocking socket, SSL calls under a
    // mutex). libnbd keeps 64 writes, then 64 reads, in flight; every byte
    // must come back.
    TlsFixture t(TlsMode::kRequire);
    REQUIRE(t.fixture.start_status.ok());
    testing::NbdHandle h = connect_psk(t);
    REQUIRE(h != nullptr);
    CHECK(nbd_get_tls_negotiated(h.get()) == 1);

    constexpr size_t kRequests = 64, kBytes = 96 * 1024;  // 6 MiB of the 8 MiB disk
    std::vector<std::vector<std::byte>> written(kRequests), read(kRequests, std::vector<std::byte>(kBytes));
    for (size_t i = 0; i < kRequests; ++i) {
      written[i] = testing::pattern(kBytes, static_cast<uint8_t>(i));
      REQUIRE(nbd_aio_pwrite(h.get(), written[i].data(), kBytes, i * kBytes, NBD_NULL_COMPLETION, 0) > 0);
    }
    while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), 5000) > 0);
    for (size_t i = 0; i < kRequests; ++i) {
      REQUIRE(nbd_aio_pread(h.get(), read[i].data(), kBytes, i * kBytes, NBD_NULL_COMPLETION, 0) > 0);
    }
    while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), 5000) > 0);
    for (size_t i = 0; i < kRequests; ++i) {
      CAPTURE(i);
      CHECK(read[i] == written[i]);
    }
    CHECK(nbd_shutdown(h.get(), 0) == 0);
  }

  TEST_CASE("tls: small replies sent by their writer never overtake large ones the sender thread holds") {
    // Replies over 128 KiB go through the connection's sender thread; smaller
    // ones are sent by the worker itself, but only while nothing is queued.
    // Reads of 4 KiB and 1 MiB alternate, 32 in flight: a small reply slipped
    // in between a large one's records would break libnbd's stream.
    TlsFixture t(TlsMode::kRequire);
    REQUIRE(t.fixture.start_status.ok());
    testing::NbdHandle h = connect_psk(t);
    REQUIRE(h != nullptr);
    constexpr size_t kDisk = 8 << 20, kLarge = 1 << 20, kSmall = 4096, kRequests = 96;
    const auto image = testing::pattern(kDisk, 7);
    for (size_t off = 0; off < kDisk; off += kLarge) {
      REQUIRE(nbd_pwrite(h.get(), image.data() + off, kLarge, off, 0) == 0);
    }
    std::vector<std::vector<std::byte>> read(kRequests);
    std::vector<uint64_t> offsets(kRequests);
    for (size_t i = 0; i < kRequests; ++i) {
      const size_t len = i % 2 == 0 ? kLarge : kSmall;
      offsets[i] = (i * 777 * kSmall) % (kDisk - len + 1) / kSmall * kSmall;
      read[i].resize(len);
      while (nbd_aio_in_flight(h.get()) >= 32) REQUIRE(nbd_poll(h.get(), 5000) > 0);
      REQUIRE(nbd_aio_pread(h.get(), read[i].data(), len, offsets[i], NBD_NULL_COMPLETION, 0) > 0);
    }
    while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), 5000) > 0);
    for (size_t i = 0; i < kRequests; ++i) {
      CAPTURE(i);
      CHECK(std::equal(read[i].begin(), read[i].end(), image.begin() + static_cast<ptrdiff_t>(offsets[i])));
    }
    CHECK(nbd_shutdown(h.get(), 0) == 0);
  }

  TEST_CASE("tls: a client that stops reading with large replies queued costs its connection only") {
    TlsFixture t(TlsMode::kRequire);
    REQUIRE(t.fixture.start_status.ok());
    auto stalled = [&](bool hang_up) {
      auto c = std::make_unique<RawClient>(t.fixture.socket_path());
      REQUIRE(starttls(*c));
      auto tls = std::make_unique<TlsClient>(c->fd());
      REQUIRE(tls->ok());
      REQUIRE(tls->final_reply_type(kOptGo, RawClient::go_payload("disk")) == kRepAck);
      // 16 MiB of replies, far more than the socket and the sender's queue
      // hold, and none of it read.
      for (uint64_t i = 0; i < 16; ++i) {
        REQUIRE(tls->send(request(kCmdRead, i, (i % 8) << 20, 1 << 20)));
      }
      if (hang_up) {
        tls.reset();
        c.reset();
      }
      return std::make_pair(std::move(c), std::move(tls));
    };
    auto served = [&] {
      testing::NbdHandle h = connect_psk(t);
      if (h == nullptr) return false;
      std::vector<std::byte> b(4096);
      return nbd_pread(h.get(), b.data(), b.size(), 0, 0) == 0 && nbd_shutdown(h.get(), 0) == 0;
    };
    // Hung up: its connection ends (the sends fail), the server keeps serving.
    (void)stalled(/*hang_up=*/true);
    CHECK(served());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!t.fixture.server->clients().empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(t.fixture.server->clients().empty());
    // Still connected but not reading: others are served meanwhile, and
    // stopping the server cuts it off after the grace period instead of
    // waiting on it forever.
    auto held = stalled(/*hang_up=*/false);
    CHECK(served());
    const auto t0 = std::chrono::steady_clock::now();
    t.fixture.server->stop();
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  }

  TEST_CASE("tls: key updates are answered in order with the replies; a forged record gets the server's alert") {
    // A KeyUpdate is read by the reader thread; OpenSSL answers it (the
    // server's own KeyUpdate) with the next records a worker writes, and the
    // answer must reach the socket before them: the client could not decrypt
    // a reply that overtook it. A record that fails authentication is
    // answered by the reader thread itself with a bad_record_mac alert.
    TlsFixture t(TlsMode::kRequire);
    REQUIRE(t.fixture.start_status.ok());
    RawClient c(t.fixture.socket_path());
    REQUIRE(starttls(c));
    TlsClient tls(c.fd());
    REQUIRE(tls.ok());
    REQUIRE(tls.final_reply_type(kOptGo, RawClient::go_payload("disk")) == kRepAck);
    for (uint64_t round = 0; round < 4; ++round) {
      CAPTURE(round);
      REQUIRE(tls.key_update());
      // 64 KiB replies are sent by the worker, 256 KiB ones by the sender thread.
      auto data = testing::pattern(round % 2 == 0 ? 64 * 1024 : 256 * 1024, static_cast<uint8_t>(round));
      WireWriter w = request(kCmdWrite, 100 + round, round * data.size(), static_cast<uint32_t>(data.size()));
      w.data().insert(w.data().end(), data.begin(), data.end());
      WireWriter r = request(kCmdRead, 200 + round, round * data.size(), static_cast<uint32_t>(data.size()));
      REQUIRE(tls.send(w));
      auto write_reply = tls.recv(16);
      REQUIRE(write_reply.size() == 16);
      CHECK(load_be32(write_reply.data() + 4) == 0);
      CHECK(load_be64(write_reply.data() + 8) == 100 + round);
      REQUIRE(tls.send(r));
      auto read_reply = tls.recv(16 + data.size());
      REQUIRE(read_reply.size() == 16 + data.size());
      CHECK(load_be32(read_reply.data() + 4) == 0);
      CHECK(load_be64(read_reply.data() + 8) == 200 + round);
      CHECK(std::equal(data.begin(), data.end(), read_reply.begin() + 16));
    }
    // An application-data record of 32 zero bytes: its tag cannot verify.
    std::vector<std::byte> forged(5 + 32, std::byte{0});
    forged[0] = std::byte{0x17}, forged[1] = std::byte{0x03}, forged[2] = std::byte{0x03}, forged[4] = std::byte{32};
    REQUIRE(::send(c.fd(), forged.data(), forged.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(forged.size()));
    ERR_clear_error();
    CHECK(tls.recv(1).empty());
    CHECK(ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_SSLV3_ALERT_BAD_RECORD_MAC);
  }

  TEST_CASE("tls: a client idle inside TLS before GO is dropped after the handshake timeout") {
    TlsFixture t(TlsMode::kRequire, /*handshake_timeout_ms=*/300);
    REQUIRE(t.fixture.start_status.ok());
    RawClient c(t.fixture.socket_path());
    REQUIRE(starttls(c));
    TlsClient tls(c.fd());
    REQUIRE(tls.ok());
    const auto t0 = std::chrono::steady_clock::now();
    // Nothing sent: the server must hang up (the client's read sees the end)
    // well before the RawClient's own 5 s receive timeout.
    CHECK(tls.recv(1).empty());
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(4));
  }

  TEST_CASE("tls: the server refuses to start with credentials it cannot load") {
    testing::TempDir dir;
    TlsOptions o;
    o.mode = TlsMode::kOn;
    CHECK(TlsServer::Create(o).status().message().find("certificates directory or a PSK file") != std::string::npos);
    o.certificates_dir = dir.path;
    CHECK(TlsServer::Create(o).status().message().find("server-cert.pem") != std::string::npos);
    o.certificates_dir.clear();
    o.psk_file = dir.path + "/missing.psk";
    CHECK(TlsServer::Create(o).status().message().find("missing.psk") != std::string::npos);
    o.psk_file.clear();
    o.verify_peer = true;
    CHECK_FALSE(TlsServer::Create(o).ok());
  }

  TEST_CASE("tls psk file: identity:hexkey lines, comments skipped, errors name the line and never the key") {
    auto table = parse_psk_file("# keys\n\nalice:00ff10\r\nbob:ABCDEF0123\n");
    REQUIRE(table.ok());
    CHECK(table->size() == 2);
    CHECK(table->at("alice") == std::vector<unsigned char>{0x00, 0xff, 0x10});
    CHECK(table->at("bob").size() == 5);

    auto message = [](const std::string& text) { return parse_psk_file(text).status().message(); };
    CHECK(message("alice 00ff\n").find("line 1: expected identity:hexkey") != std::string::npos);
    CHECK(message("alice:00ff\n:00ff\n").find("line 2: empty identity") != std::string::npos);
    CHECK(message("alice:0ff\n").find("even number of hex digits") != std::string::npos);
    CHECK(message("alice:zz11\n").find("not a hex digit") != std::string::npos);
    CHECK(message("alice:zz11\n").find("zz11") == std::string::npos);
    CHECK(message("alice:00\nalice:11\n").find("appears twice") != std::string::npos);
    CHECK(message("# nothing\n").find("no keys") != std::string::npos);
    CHECK(message("a:" + std::string(2 * (kMaxPskBytes + 1), '0') + "\n").find("longer than 512") != std::string::npos);
  }
}

}  // namespace portalbd::nbd
