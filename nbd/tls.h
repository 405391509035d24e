// TLS for the NBD server (issue 25): the server-wide TlsServer, built once at
// start from the certificates directory and/or the PSK file, and the
// per-connection TlsTransport that NBD_OPT_STARTTLS swaps in for the plain
// socket (nbd/handshake.h). OpenSSL; the types stay out of this header.
//
// Credentials, as nbdkit and qemu-nbd lay them out:
//   certificates_dir/server-cert.pem   the server's certificate (chain)
//   certificates_dir/server-key.pem    its private key
//   certificates_dir/ca-cert.pem       the CA client certificates must chain
//                                      to (needed for verify_peer)
//   psk_file                           identity:hexkey lines (nbd/psk_file.h)
// With both, a client may use either. TLS 1.2 at least; TLS 1.3 PSK is what
// libnbd (GnuTLS) uses; the kernel's nbd-client does X.509 only.
//
// A TlsTransport reads and writes through one SSL object. OpenSSL forbids two
// threads inside one SSL object at once, and here the reader thread reads
// while workers write replies: so the socket is non-blocking, every SSL call
// is made under ssl_mu_, and the waiting (poll) is done without it.
// OpenSSL reads the socket itself (with read-ahead), but hands its records
// to a BIO that only collects them (pending_): the transport sends them with few large send() calls
// made outside ssl_mu_ (one record per syscall, 64 a MiB, each waking the
// client, cost more than the encryption; and the reader stayed locked out
// while a record waited for socket space).
// A large reply is sent by a sender thread of the connection (started on
// the first one): the writer encrypts the next 256 KiB while the sender
// copies the last into the socket or waits for the client to make room, so
// one connection's reads use two cores. Small replies (and everything while
// nothing is queued) the writer sends itself: no thread hand-off on their
// latency. Either way the bytes reach the socket in the order OpenSSL made
// them; a send that fails fails every later send_all().
// Thread-safety: TlsServer is immutable after Create() and may be used by
// every connection thread at once. TlsTransport: see nbd/transport.h.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nbd/psk_file.h"
#include "nbd/transport.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

struct ssl_ctx_st;  // SSL_CTX
struct ssl_st;      // SSL
struct bio_st;      // BIO

namespace portalbd::nbd {

// off: STARTTLS is refused (ERR_POLICY). on: a client may use TLS or not.
// require: every option before STARTTLS but ABORT gets ERR_TLS_REQD
// (EXPORT_NAME, which cannot be answered, closes the connection).
enum class TlsMode { kOff, kOn, kRequire };

const char* tls_mode_name(TlsMode mode);  // "off", "on", "require"
// "off", "on" or "require"; InvalidArgument otherwise.
Result<TlsMode> parse_tls_mode(const std::string& text);

struct TlsOptions {
  TlsMode mode = TlsMode::kOff;
  std::string certificates_dir;  // "" = no X.509 certificate
  bool verify_peer = false;      // client certificates must chain to ca-cert.pem
  std::string psk_file;          // "" = no PSK
};

class TlsTransport;

class TlsServer {
 public:
  // Loads the credentials. The error names the file and what is wrong.
  // REQUIRES: options.mode != kOff.
  static Result<std::unique_ptr<TlsServer>> Create(const TlsOptions& options);
  ~TlsServer();
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  TlsMode mode() const { return mode_; }

  // Runs the server side of a TLS handshake on `fd` (borrowed; made
  // non-blocking), giving up after `timeout_ms` in all (0: never). The
  // error is the reason alone, mostly in OpenSSL's words ("certificate
  // verify failed", "no shared cipher", "client closed the connection",
  // "timed out").
  Result<std::unique_ptr<TlsTransport>> accept(int fd, uint32_t timeout_ms) const;

 private:
  TlsServer() = default;
  static unsigned int psk_callback(struct ssl_st* ssl, const char* identity, unsigned char* psk,
                                   unsigned int max_psk_len);

  TlsMode mode_ = TlsMode::kOff;
  ssl_ctx_st* ctx_ = nullptr;  // owned
  PskTable psk_;               // empty: no PSK
};

class TlsTransport final : public Transport {
 public:
  ~TlsTransport() override;

  ssize_t read_some(std::span<std::byte> out) override;
  using Transport::send_all;
  Status send_all(std::span<const struct iovec> iov) override EXCLUDES(write_mu_, ssl_mu_);
  size_t readable(bool wait) override;
  void set_receive_timeout(uint32_t timeout_ms) override { receive_timeout_ms_ = timeout_ms; }

  // Who the client proved to be: "psk:<identity>", "x509:<subject DN>", or
  // "anonymous" (X.509 without a client certificate). Set by the handshake.
  const std::string& identity() const { return identity_; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384".
  const std::string& cipher() const { return cipher_; }

 private:
  friend class TlsServer;
  TlsTransport(int fd, ssl_st* ssl) : fd_(fd), ssl_(ssl) {}
  // The write side of ssl_'s BIO pair: OpenSSL's records land in pending_.
  static bio_st* new_output_bio(TlsTransport* transport);
  static int bio_write(bio_st* bio, const char* data, size_t length, size_t* written);
  Status handshake(uint32_t timeout_ms) EXCLUDES(write_mu_, ssl_mu_);
  // Encrypts `data` into records, sending them once enough have gathered.
  Status encrypt(const std::byte* data, size_t length) REQUIRES(write_mu_) EXCLUDES(ssl_mu_);
  // Moves the records OpenSSL made (pending_) to the end of out_; cheap
  // (a swap) when out_ is empty.
  void take_output() REQUIRES(write_mu_, ssl_mu_);
  // Sends out_ whole (waiting for socket space at most `timeout_ms`, -1
  // forever) and empties it.
  Status send_output(int timeout_ms) REQUIRES(write_mu_) EXCLUDES(ssl_mu_);
  // Sends out_: itself (as send_output) when `small` and nothing is queued
  // or being sent, else through the sender thread (hand_off).
  Status flush_output(bool small, int timeout_ms) REQUIRES(write_mu_) EXCLUDES(ssl_mu_, queue_mu_);
  // Queues out_ for the sender thread, starting it if need be; waits while
  // kQueueBytes are queued already. out_ is empty after.
  Status hand_off() REQUIRES(write_mu_) EXCLUDES(ssl_mu_, queue_mu_);
  // The sender thread: sends queued buffers in order until stopping_ and
  // the queue is empty.
  void sender_loop() EXCLUDES(queue_mu_);
  // After an SSL call outside the write path (handshake, read) made records
  // (handshake messages, alerts, key updates): sends them.
  Status send_pending(int timeout_ms) EXCLUDES(write_mu_, ssl_mu_, queue_mu_);

  const int fd_;
  Mutex ssl_mu_;                                        // held for each SSL call on ssl_, never while waiting
  ssl_st* const ssl_;                                   // owned
  std::vector<std::byte> pending_ GUARDED_BY(ssl_mu_);  // records OpenSSL made, not taken yet
  uint32_t receive_timeout_ms_ = 0;                     // the reader thread's
  std::string identity_, cipher_;                       // written by the handshake, read-only after
  // One writer at a time (the ReplyWriter serialises them already); taking
  // records from pending_ and sending them happen under it, so they reach
  // the socket in the order OpenSSL made them.
  Mutex write_mu_;
  std::vector<std::byte> coalesce_ GUARDED_BY(write_mu_);  // small iovecs sent as one record
  std::vector<std::byte> out_ GUARDED_BY(write_mu_);       // records not sent yet
  std::thread sender_ GUARDED_BY(write_mu_);               // not started until a large reply

  // What the writer hands the sender thread (lock order: write_mu_, then
  // queue_mu_; the sender holds queue_mu_ alone and never while sending).
  Mutex queue_mu_;
  CondVar work_ready_;  // the sender waits for buffers or stopping_
  CondVar room_ready_;  // writers wait for queued_bytes_ to fall
  std::deque<std::vector<std::byte>> queue_ GUARDED_BY(queue_mu_);
  std::vector<std::vector<std::byte>> spare_ GUARDED_BY(queue_mu_);  // sent buffers, for reuse
  size_t queued_bytes_ GUARDED_BY(queue_mu_) = 0;                    // queued or being sent
  bool stopping_ GUARDED_BY(queue_mu_) = false;
  Status send_error_ GUARDED_BY(queue_mu_);  // the first failed send
};

}  // namespace portalbd::nbd
