#include "nbd/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

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
  struct pollfd pfd {fd, events, 0};
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

unsigned int TlsServer::psk_callback(ssl_st* ssl, const char* identity, unsigned char* psk,
                                     unsigned int max_psk_len) {
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
  if (SSL_set_fd(ssl, fd) != 1) return Status::IOError(with_openssl_errors("SSL_set_fd"));
  SSL_set_app_data(ssl, transport.get());
  PBD_RETURN_IF_ERROR(transport->handshake(timeout_ms));
  return transport;
}

TlsTransport::~TlsTransport() {
  MutexLock lock(&ssl_mu_);
  // Best effort close_notify; the socket is non-blocking, so this never waits.
  if (SSL_is_init_finished(ssl_)) (void)SSL_shutdown(ssl_);
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
    {
      MutexLock lock(&ssl_mu_);
      ERR_clear_error();
      errno = 0;
      rc = SSL_read_ex(ssl_, out.data(), out.size(), &n);
      err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
      if (rc != 1 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) ERR_clear_error();
    }
    if (rc == 1) return static_cast<ssize_t>(n);
    switch (err) {
      case SSL_ERROR_ZERO_RETURN: return 0;
      case SSL_ERROR_WANT_READ:
        if (!wait_fd(fd_, POLLIN, poll_timeout(receive_timeout_ms_))) return -1;
        break;
      case SSL_ERROR_WANT_WRITE:
        if (!wait_fd(fd_, POLLOUT, poll_timeout(receive_timeout_ms_))) return -1;
        break;
      case SSL_ERROR_SYSCALL:
        return errno == 0 ? 0 : -1;  // a bare EOF ends the stream, like recv() == 0
      default: return -1;
    }
  }
}

Status TlsTransport::write_bytes(const std::byte* data, size_t length) {
  while (length > 0) {
    int rc, err;
    size_t n = 0;
    std::string why;
    {
      MutexLock lock(&ssl_mu_);
      ERR_clear_error();
      errno = 0;
      rc = SSL_write_ex(ssl_, data, length, &n);
      err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
      if (rc != 1 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) why = openssl_errors();
    }
    if (rc == 1) {
      data += n;
      length -= n;
      continue;
    }
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      if (!wait_fd(fd_, err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, -1)) {
        return Status::IOError(std::string("TLS send: poll: ") + std::strerror(errno));
      }
      continue;
    }
    if (why.empty()) why = errno != 0 ? std::strerror(errno) : "connection closed";
    return Status::IOError("TLS send: " + why);
  }
  return Status::OK();
}

Status TlsTransport::send_all(std::span<const struct iovec> iov) {
  // One TLS record costs ~22 bytes and an encryption call: a reply's header
  // and small chunks go out together, topping up the record a large data
  // tail then starts.
  constexpr size_t kRecordBytes = 16 * 1024;
  MutexLock lock(&write_mu_);
  coalesce_.clear();
  for (const struct iovec& v : iov) {
    const auto* p = static_cast<const std::byte*>(v.iov_base);
    size_t len = v.iov_len;
    const size_t top_up = std::min(len, kRecordBytes - std::min(kRecordBytes, coalesce_.size()));
    coalesce_.insert(coalesce_.end(), p, p + top_up);
    p += top_up;
    len -= top_up;
    if (coalesce_.size() >= kRecordBytes || len > 0) {
      PBD_RETURN_IF_ERROR(write_bytes(coalesce_.data(), coalesce_.size()));
      coalesce_.clear();
    }
    if (len > 0) PBD_RETURN_IF_ERROR(write_bytes(p, len));
  }
  if (!coalesce_.empty()) PBD_RETURN_IF_ERROR(write_bytes(coalesce_.data(), coalesce_.size()));
  coalesce_.clear();
  return Status::OK();
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
