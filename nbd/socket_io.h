// File descriptors and blocking socket I/O for the NBD server.
//
// UniqueFd owns one descriptor and closes it exactly once. The I/O helpers
// loop over short reads/writes and EINTR, and never raise SIGPIPE
// (MSG_NOSIGNAL), so a client that vanishes mid-reply only fails that call.
//
// Thread-safety: UniqueFd is not synchronised; the helpers are as safe as the
// descriptor they are given (the server serialises writers with a mutex).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "src/util/status.h"

namespace portalbd::nbd {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// How a read ended. kEof: closed before the first byte (a clean end between
// messages); kTruncated: closed part-way through (a protocol error).
enum class ReadResult { kOk, kEof, kTruncated, kError };

// Reads exactly out.size() bytes.
ReadResult read_exact(int fd, std::span<std::byte> out);
// Reads and drops `length` bytes through a small fixed buffer, so a payload
// we refuse never costs memory proportional to its size.
ReadResult discard_exact(int fd, uint64_t length);
// Writes every byte of every iovec, in order. Returns false on any error.
bool write_all(int fd, std::span<const struct iovec> iov);
bool write_all(int fd, std::span<const std::byte> data);

// "Address already in use" for errno values: strerror, thread-safe.
std::string errno_text(int err);

}  // namespace portalbd::nbd
