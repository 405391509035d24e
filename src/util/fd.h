// UniqueFd: owns one file descriptor and closes it; plus whole-buffer I/O
// helpers that retry on EINTR and short transfers, and the fsync calls that
// make files and directory entries durable. The one place for them: the NBD
// server, the control socket, the file:// store and the journal use these.
// Thread-safety: a UniqueFd is owned by one thread at a time; the helpers are
// as safe as the descriptor they are given.
#pragma once

#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "src/util/status.h"

namespace portalbd {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Writes all of `data` to a file or pipe (retrying EINTR and short writes).
// kIOError "write: <errno text>" on failure.
Status write_all(int fd, std::span<const std::byte> data);
// Sends every byte of every iovec, in order, on a socket (retrying EINTR and
// short sends). MSG_NOSIGNAL: a peer that has gone gives kIOError
// "send: Broken pipe", never SIGPIPE.
Status send_all(int fd, std::span<const struct iovec> iov);
Status send_all(int fd, std::span<const std::byte> data);
// Reads exactly out.size() bytes at `offset`; kIOError on a short file.
Status pread_all(int fd, std::span<std::byte> out, uint64_t offset);
// Writes every byte of every iovec, in order, from `offset` on (retrying
// EINTR and short writes). kIOError "pwrite: <errno text>" on failure.
Status pwritev_all(int fd, std::span<const struct iovec> iov, uint64_t offset);
Status pwrite_all(int fd, std::span<const std::byte> data, uint64_t offset);

// fsync(2) / fdatasync(2) of `fd`; kIOError "fsync <what>: <errno text>"
// (or "fdatasync ...") on failure. After a failed one the kernel may have
// dropped the dirty pages: a retry that succeeds proves nothing.
Status fsync_fd(int fd, const std::string& what);
Status fdatasync_fd(int fd, const std::string& what);
// Makes the entries of directory `dir` durable (files created, renamed or
// removed in it): opens it and fsyncs it. kIOError "open dir <dir>: ..." or
// "fsync dir <dir>: ...".
Status fsync_dir(const std::string& dir);

}  // namespace portalbd
