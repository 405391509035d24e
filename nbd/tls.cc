#include "nbd/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "src/util/thread_name.h"

namespace portalbd::nbd {
namespace {

// Every error OpenSSL queued on this thread, oldest first, as "a; b".
std::string openssl_errors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    // The reason alone reads best ("certificate verify failed").
    const char* reason = ERR_reason_error_string(e);
    if (reason == nullptr) {
      ERR_error_string_n(e, buf, sizeof buf);
      reason = buf;
    }
    if (!text.empty()) text += "; ";
    text += reason;
  }
  return text;
}

std::string with_openssl_errors(const std::string& what) {
  const std::string why = openssl_errors();
  return why.empty() ? what : what + ": " + why;
}

// Waits for `events` on `fd`. False on a timeout (errno ETIMEDOUT) or a
// poll failure; true when ready, hung up or in error (the next call says).
bool wait_fd(int fd, short events, int timeout_ms) {
  struct pollfd pfd {
    fd, events, 0
  };
  for (;;) {
    const int n = ::poll(&pfd, 1, timeout_ms);
    if (n > 0) return true;
    if (n == 0) {
      errno = ETIMEDOUT;
      return false;
    }
    if (errno != EINTR) return false;
  }
}

int poll_timeout(uint32_t timeout_ms) { return timeout_ms == 0 ? -1 : static_cast<int>(timeout_ms); }

std::string subject_of(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "?";
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string text(data, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(bio);
  return text;
}

}  // namespace

const char* tls_mode_name(TlsMode mode) {
  switch (mode) {
    case TlsMode::kOff: return "off";
    case TlsMode::kOn: return "on";
    case TlsMode::kRequire: return "require";
  }
  return "?";
}

Result<TlsMode> parse_tls_mode(const std::string& text) {
  if (text == "off") return TlsMode::kOff;
  if (text == "on") return TlsMode::kOn;
  if (text == "require") return TlsMode::kRequire;
  return Status::InvalidArgument("expected off, on or require");
}

Result<std::unique_ptr<TlsServer>> TlsServer::Create(const TlsOptions& options) {
  std::unique_ptr<TlsServer> server(new TlsServer());
  server->mode_ = options.mode;
  if (options.certificates_dir.empty() && options.psk_file.empty()) {
    return Status::InvalidArgument("TLS needs a certificates directory or a PSK file");
  }
  if (options.verify_peer && options.certificates_dir.empty()) {
    return Status::InvalidArgument("verifying client certificates needs a certificates directory (ca-cert.pem)");
  }
  ERR_clear_error();
  server->ctx_ = SSL_CTX_new(TLS_server_method());
  SSL_CTX* ctx = server->ctx_;
  if (ctx == nullptr) return Status::IOError(with_openssl_errors("SSL_CTX_new"));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No resumption: each connection is a full handshake, so the server sends
  // no session tickets and keeps no cache.
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // A client that closes without close_notify (most NBD clients on DISC)
  // ends the stream like any other EOF.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read ahead: one recv() brings in many records instead of two recv()s
  // (header, body) per 16 KiB record; what it buffers is seen by
  // SSL_has_pending (TlsTransport::readable).
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
  // The server picks the suite, SHA-256 ones first: AES-128-GCM is the
  // fastest with AES-NI, and a PSK (bound to SHA-256) needs a SHA-256 suite.
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") !=
      1) {
    return Status::InvalidArgument(with_openssl_errors("TLS 1.3 cipher suites"));
  }
  SSL_CTX_set_app_data(ctx, server.get());
  // OpenSSL refuses to verify a client (or take a PSK) without one, though
  // no session is ever resumed.
  static const unsigned char kSessionContext[] = "portalbd-nbd";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);

  if (!options.certificates_dir.empty()) {
    const std::filesystem::path dir(options.certificates_dir);
    const std::string cert = (dir / "server-cert.pem").string(), key = (dir / "server-key.pem").string(),
                      ca = (dir / "ca-cert.pem").string();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
      return Status::InvalidArgument(with_openssl_errors("TLS certificate " + cert));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Status::InvalidArgument(with_openssl_errors("TLS private key " + key));
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return Status::InvalidArgument(with_openssl_errors("TLS private key " + key + " does not match " + cert));
    }
    const bool have_ca = std::filesystem::exists(ca);
    if (options.verify_peer && !have_ca) {
      return Status::InvalidArgument("verifying client certificates needs " + ca);
    }
    if (have_ca) {
      if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
        return Status::InvalidArgument(with_openssl_errors("TLS CA certificate " + ca));
      }
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str())) {
        SSL_CTX_set_client_CA_list(ctx, names);
      }
    }
    if (options.verify_peer) SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!options.psk_file.empty()) {
    auto table = load_psk_file(options.psk_file);
    if (!table.ok()) return table.status();
    server->psk_ = std::move(*table);
    // OpenSSL uses this for TLS 1.3 too, binding the key to SHA-256 (as
    // GnuTLS clients do). It then ignores the PSK unless the suite chosen
    // hashes with SHA-256 too, hence the server's choice of suites below.
    // TLS 1.2 PSK suites are not enabled.
    SSL_CTX_set_psk_server_callback(ctx, &TlsServer::psk_callback);
  }
  return server;
}

TlsServer::~TlsServer() { SSL_CTX_free(ctx_); }

unsigned int TlsServer::psk_callback(ssl_st* ssl, const char* identity, unsigned char* psk, unsigned int max_psk_len) {
  const auto* server = static_cast<const TlsServer*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  auto* transport = static_cast<TlsTransport*>(SSL_get_app_data(ssl));
  if (server == nullptr || identity == nullptr) return 0;
  auto it = server->psk_.find(identity);
  if (it == server->psk_.end() || it->second.size() > max_psk_len) {
    if (transport != nullptr) transport->identity_ = std::string("unknown psk:") + identity;
    return 0;  // the handshake fails: the client's binder cannot be checked
  }
  std::memcpy(psk, it->second.data(), it->second.size());
  if (transport != nullptr) transport->identity_ = std::string("psk:") + identity;
  return static_cast<unsigned int>(it->second.size());
}

Result<std::unique_ptr<TlsTransport>> TlsServer::accept(int fd, uint32_t timeout_ms) const {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return Status::IOError(std::string("fcntl O_NONBLOCK: ") + std::strerror(errno));
  }
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return Status::IOError(with_openssl_errors("SSL_new"));
  std::unique_ptr<TlsTransport> transport(new TlsTransport(fd, ssl));
  BIO* rbio = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* wbio = TlsTransport::new_output_bio(transport.get());
  if (rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    return Status::IOError(with_openssl_errors("BIO_new"));
  }
  SSL_set_bio(ssl, rbio, wbio);  // the SSL object owns both from here
  SSL_set_app_data(ssl, transport.get());
  PBD_RETURN_IF_ERROR(transport->handshake(timeout_ms));
  return transport;
}

TlsTransport::~TlsTransport() {
  // Whatever was queued goes out first (the replies of a connection that
  // ends normally); a socket that was shut down fails it at once.
  std::thread sender;
  {
    MutexLock write_lock(&write_mu_);
    sender = std::move(sender_);
  }
  if (sender.joinable()) {
    {
      MutexLock queue_lock(&queue_mu_);
      stopping_ = true;
    }
    work_ready_.notify_one();
    sender.join();
  }
  MutexLock lock(&ssl_mu_);
  // Best effort close_notify; the socket is non-blocking, so this never waits.
  if (SSL_is_init_finished(ssl_)) {
    (void)SSL_shutdown(ssl_);
    if (!pending_.empty()) (void)::send(fd_, pending_.data(), pending_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  SSL_free(ssl_);
  ERR_clear_error();
}

Status TlsTransport::handshake(uint32_t timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int rc, err;
    {
      MutexLock lock(&ssl_mu_);
      ERR_clear_error();
      errno = 0;
      rc = SSL_accept(ssl_);
      err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
    }
    // What this step wrote (ServerHello..., or an alert saying why it
    // failed) goes out before waiting for the client's answer.
    int send_ms = -1;
    if (timeout_ms != 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      send_ms = static_cast<int>(std::max<long long>(left, 1));
    }
    const Status sent = send_pending(send_ms);
    if (rc == 1 && !sent.ok()) return sent;
    if (rc == 1) break;
    short events = 0;
    if (err == SSL_ERROR_WANT_READ) events = POLLIN;
    if (err == SSL_ERROR_WANT_WRITE) events = POLLOUT;
    if (events == 0) {
      std::string why = openssl_errors();
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) why += std::string(why.empty() ? "" : "; ") + X509_verify_cert_error_string(verify);
      if (why.empty()) {
        why = err == SSL_ERROR_SYSCALL && errno != 0 ? std::string("socket: ") + std::strerror(errno)
                                                     : "client closed the connection";
      }
      if (!identity_.empty()) why += " (" + identity_ + ")";
      return Status::IOError(why);
    }
    int wait_ms = -1;
    if (timeout_ms != 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Status::IOError("timed out");
      wait_ms = static_cast<int>(left);
    }
    if (!wait_fd(fd_, events, wait_ms)) {
      return Status::IOError(errno == ETIMEDOUT ? std::string("timed out")
                                                : std::string("poll: ") + std::strerror(errno));
    }
  }
  MutexLock lock(&ssl_mu_);
  cipher_ = std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
  if (X509* cert = SSL_get0_peer_certificate(ssl_)) {
    identity_ = "x509:" + subject_of(cert);
  } else if (identity_.empty()) {
    identity_ = "anonymous";
  }
  return Status::OK();
}

ssize_t TlsTransport::read_some(std::span<std::byte> out) {
  for (;;) {
    int rc, err;
    size_t n = 0;
    bool wrote;
    {
      MutexLock lock(&ssl_mu_);
      ERR_clear_error();
      errno = 0;
      rc = SSL_read_ex(ssl_, out.data(), out.size(), &n);
      err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
      if (rc != 1 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) ERR_clear_error();
      wrote = !pending_.empty();
    }
    // Reading can make OpenSSL answer (a key update, an alert).
    if (wrote && !send_pending(-1).ok()) return -1;
    if (rc == 1) return static_cast<ssize_t>(n);
    switch (err) {
      case SSL_ERROR_ZERO_RETURN: return 0;
      case SSL_ERROR_WANT_READ:
        if (!wait_fd(fd_, POLLIN, poll_timeout(receive_timeout_ms_))) return -1;
        break;
      case SSL_ERROR_WANT_WRITE:
        if (!wait_fd(fd_, POLLOUT, poll_timeout(receive_timeout_ms_))) return -1;
        break;
      case SSL_ERROR_SYSCALL: return errno == 0 ? 0 : -1;  // a bare EOF ends the stream, like recv() == 0
      default: return -1;
    }
  }
}

// Records are sent once this many bytes of them have gathered (and at the
// end of each send_all): a 1 MiB reply leaves in four send() calls.
constexpr size_t kSendBytes = 256 * 1024;
// A reply of at most this many bytes (128 KiB of data and its header) is
// sent by its writer when the sender thread has nothing queued.
constexpr size_t kDirectBytes = 129 * 1024;
// The sender thread's queue holds at most about this many bytes of records;
// a writer that would go beyond waits.
constexpr size_t kQueueBytes = 1024 * 1024;

BIO* TlsTransport::new_output_bio(TlsTransport* transport) {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portalbd TLS output");
    if (m == nullptr) return m;
    BIO_meth_set_write_ex(m, &TlsTransport::bio_write);
    // OpenSSL flushes its BIO after each flight of records: nothing to do,
    // pending_ is sent by the transport. Every other control is unsupported.
    BIO_meth_set_ctrl(m, [](BIO*, int cmd, long, void*) -> long { return cmd == BIO_CTRL_FLUSH ? 1 : 0; });
    return m;
  }();
  if (method == nullptr) return nullptr;
  BIO* bio = BIO_new(method);
  if (bio == nullptr) return nullptr;
  BIO_set_data(bio, transport);
  BIO_set_init(bio, 1);
  return bio;
}

int TlsTransport::bio_write(BIO* bio, const char* data, size_t length, size_t* written) {
  auto* transport = static_cast<TlsTransport*>(BIO_get_data(bio));
  transport->ssl_mu_.assert_held();  // OpenSSL writes only inside an SSL call, made under ssl_mu_
  const auto* p = reinterpret_cast<const std::byte*>(data);
  transport->pending_.insert(transport->pending_.end(), p, p + length);
  *written = length;
  return 1;
}

void TlsTransport::take_output() {
  if (pending_.empty()) return;
  if (out_.empty()) {
    out_.swap(pending_);  // both keep their capacity: no allocation once warm
  } else {
    out_.insert(out_.end(), pending_.begin(), pending_.end());
  }
  pending_.clear();
}

namespace {

// Sends `data` whole on the non-blocking socket `fd`, waiting for room at
// most `timeout_ms` each time (-1: forever).
Status send_bytes(int fd, std::span<const std::byte> data, int timeout_ms) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_fd(fd, POLLOUT, timeout_ms)) {
        return Status::IOError(errno == ETIMEDOUT ? std::string("TLS send: timed out")
                                                  : std::string("TLS send: poll: ") + std::strerror(errno));
      }
      continue;
    }
    return Status::IOError(std::string("TLS send: ") + (n < 0 ? std::strerror(errno) : "connection closed"));
  }
  return Status::OK();
}

}  // namespace

Status TlsTransport::send_output(int timeout_ms) {
  const Status sent = send_bytes(fd_, out_, timeout_ms);
  out_.clear();
  return sent;
}

Status TlsTransport::flush_output(bool small, int timeout_ms) {
  if (out_.empty()) return Status::OK();
  {
    MutexLock queue_lock(&queue_mu_);
    if (!send_error_.ok()) {
      out_.clear();
      return send_error_;
    }
    // Nothing can be queued meanwhile: only a holder of write_mu_ queues.
    // queued_bytes_ counts the buffer being sent too: 0 means the sender is idle.
    if (!small || queued_bytes_ != 0) {
      queue_lock.unlock();
      return hand_off();
    }
  }
  return send_output(timeout_ms);
}

Status TlsTransport::hand_off() {
  if (out_.empty()) return Status::OK();
  if (!sender_.joinable()) {
    sender_ = std::thread([this] {
      name_this_thread("nbd-tls-send");
      sender_loop();
    });
  }
  MutexLock queue_lock(&queue_mu_);
  while (send_error_.ok() && queued_bytes_ >= kQueueBytes) room_ready_.wait(queue_lock);
  if (!send_error_.ok()) {
    out_.clear();
    return send_error_;
  }
  queued_bytes_ += out_.size();
  queue_.push_back(std::move(out_));
  out_ = std::vector<std::byte>();
  if (!spare_.empty()) {
    out_ = std::move(spare_.back());
    spare_.pop_back();
  }
  work_ready_.notify_one();
  return Status::OK();
}

void TlsTransport::sender_loop() {
  MutexLock queue_lock(&queue_mu_);
  for (;;) {
    while (queue_.empty() && !stopping_) work_ready_.wait(queue_lock);
    if (queue_.empty()) return;  // stopping, and everything was sent
    std::vector<std::byte> buffer = std::move(queue_.front());
    queue_.pop_front();
    const bool failed = !send_error_.ok();
    queue_lock.unlock();
    // After a failure the rest is dropped: the stream is broken anyway.
    const Status sent = failed ? Status::OK() : send_bytes(fd_, buffer, -1);
    queue_lock.lock();
    queued_bytes_ -= buffer.size();
    if (!sent.ok() && send_error_.ok()) send_error_ = sent;
    buffer.clear();
    if (spare_.size() < 2) spare_.push_back(std::move(buffer));
    room_ready_.notify_all();
  }
}

Status TlsTransport::send_pending(int timeout_ms) {
  MutexLock write_lock(&write_mu_);
  {
    MutexLock lock(&ssl_mu_);
    take_output();
  }
  return flush_output(/*small=*/true, timeout_ms);
}

Status TlsTransport::encrypt(const std::byte* data, size_t length) {
  while (length > 0) {
    const size_t chunk = std::min(length, kSendBytes);
    int rc;
    size_t n = 0;
    std::string why;
    {
      MutexLock lock(&ssl_mu_);
      ERR_clear_error();
      errno = 0;
      // Into the memory BIO: it takes everything, so this never has to wait.
      rc = SSL_write_ex(ssl_, data, chunk, &n);
      if (rc != 1) why = openssl_errors();
      take_output();
    }
    if (rc != 1) return Status::IOError("TLS send: " + (why.empty() ? std::string("connection closed") : why));
    data += n;
    length -= n;
    if (out_.size() >= kSendBytes) PBD_RETURN_IF_ERROR(hand_off());
  }
  return Status::OK();
}

Status TlsTransport::send_all(std::span<const struct iovec> iov) {
  // One TLS record costs ~22 bytes and an encryption call: a reply's header
  // and small chunks go out together, topping up the record a large data
  // tail then starts.
  constexpr size_t kRecordBytes = 16 * 1024;
  size_t total = 0;
  for (const struct iovec& v : iov) total += v.iov_len;
  MutexLock lock(&write_mu_);
  {
    MutexLock queue_lock(&queue_mu_);
    if (!send_error_.ok()) return send_error_;
  }
  coalesce_.clear();
  for (const struct iovec& v : iov) {
    const auto* p = static_cast<const std::byte*>(v.iov_base);
    size_t len = v.iov_len;
    const size_t top_up = std::min(len, kRecordBytes - std::min(kRecordBytes, coalesce_.size()));
    coalesce_.insert(coalesce_.end(), p, p + top_up);
    p += top_up;
    len -= top_up;
    if (coalesce_.size() >= kRecordBytes || len > 0) {
      PBD_RETURN_IF_ERROR(encrypt(coalesce_.data(), coalesce_.size()));
      coalesce_.clear();
    }
    if (len > 0) PBD_RETURN_IF_ERROR(encrypt(p, len));
  }
  if (!coalesce_.empty()) PBD_RETURN_IF_ERROR(encrypt(coalesce_.data(), coalesce_.size()));
  coalesce_.clear();
  return flush_output(/*small=*/total <= kDirectBytes, -1);
}

size_t TlsTransport::readable(bool wait) {
  size_t pending;
  {
    MutexLock lock(&ssl_mu_);
    pending = static_cast<size_t>(std::max(SSL_pending(ssl_), 0));
    // Records read ahead but not decrypted yet: readable without waiting.
    if (pending == 0 && SSL_has_pending(ssl_)) pending = 1;
  }
  int queued = 0;
  if (::ioctl(fd_, FIONREAD, &queued) != 0) queued = 0;
  const size_t now = pending + static_cast<size_t>(std::max(queued, 0));
  if (now > 0 || !wait) return now;
  if (!wait_fd(fd_, POLLIN, -1)) return 0;
  if (::ioctl(fd_, FIONREAD, &queued) != 0) return 0;
  return static_cast<size_t>(std::max(queued, 0));
}

}  // namespace portalbd::nbd
