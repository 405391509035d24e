// Transport: the byte stream of one NBD connection, over which the handshake
// and the request loop read and write. PlainTransport is the socket itself;
// TlsTransport (nbd/tls.h) is a TLS session on it, swapped in by
// NBD_OPT_STARTTLS. Everything after that swap goes through the session.
//
// Ownership: a transport borrows the socket descriptor; the Connection owns
// the descriptor and the transport, and destroys the transport first.
// Thread-safety: one reader thread calls read_some()/readable(); any number
// of writer threads may call send_all() (the ReplyWriter serialises them
// with its own mutex); a reader and a writer may run at the same time.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "src/util/status.h"

namespace portalbd::nbd {

class Transport {
 public:
  virtual ~Transport() = default;

  // Reads at least one byte and at most out.size(): the count; 0 when the
  // stream ended cleanly; -1 on an error or a receive timeout.
  // REQUIRES: !out.empty().
  virtual ssize_t read_some(std::span<std::byte> out) = 0;
  // Sends every byte of every iovec, in order; kIOError once the peer is gone.
  [[nodiscard]] virtual Status send_all(std::span<const struct iovec> iov) = 0;
  // Bytes a read would return without blocking (for TLS an estimate: record
  // bytes the kernel holds count too). With `wait` and none ready, waits
  // until some are; 0 then means the stream ended or failed.
  virtual size_t readable(bool wait) = 0;
  // A read that waits longer than this fails (0: wait forever).
  virtual void set_receive_timeout(uint32_t timeout_ms) = 0;

  [[nodiscard]] Status send_all(std::span<const std::byte> data) {
    struct iovec one {
      const_cast<std::byte*>(data.data()), data.size()
    };
    return send_all(std::span(&one, 1));
  }
};

// The socket as it is: recv(), send_all() from src/util/fd.h.
class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) : fd_(fd) {}
  ssize_t read_some(std::span<std::byte> out) override;
  using Transport::send_all;
  Status send_all(std::span<const struct iovec> iov) override;
  size_t readable(bool wait) override;
  void set_receive_timeout(uint32_t timeout_ms) override;

 private:
  const int fd_;
};

}  // namespace portalbd::nbd
