#include "src/util/fd.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

namespace portalbd {
namespace {

// The one "every byte" loop: hands the iovecs not yet written to `step`
// (writev or sendmsg: returns bytes taken, or -1 with errno) until none are
// left, retrying EINTR and short transfers. `what` names the call in errors.
template <typename Step>
Status transfer_all(std::span<const struct iovec> iov_in, const char* what, Step step) {
  // A step may stop part-way through any iovec; keep a private, mutable copy.
  std::vector<struct iovec> iov(iov_in.begin(), iov_in.end());
  size_t first = 0;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = step(iov.data() + first, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(std::string(what) + ": " + std::strerror(errno));
    }
    auto left = static_cast<size_t>(n);
    while (left > 0 && first < iov.size()) {
      size_t taken = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + taken;
      iov[first].iov_len -= taken;
      left -= taken;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return Status::OK();
}

struct iovec one_iovec(std::span<const std::byte> data) {
  return {const_cast<std::byte*>(data.data()), data.size()};
}

}  // namespace

Status write_all(int fd, std::span<const std::byte> data) {
  struct iovec one = one_iovec(data);
  return transfer_all(std::span(&one, 1), "write",
                      [fd](const struct iovec* iov, int count) { return ::writev(fd, iov, count); });
}

Status send_all(int fd, std::span<const struct iovec> iov) {
  return transfer_all(iov, "send", [fd](const struct iovec* first, int count) {
    struct msghdr msg {};
    msg.msg_iov = const_cast<struct iovec*>(first);
    msg.msg_iovlen = static_cast<size_t>(count);
    return ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  });
}

Status send_all(int fd, std::span<const std::byte> data) {
  struct iovec one = one_iovec(data);
  return send_all(fd, std::span(&one, 1));
}

Status pread_all(int fd, std::span<std::byte> out, uint64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(std::string("pread: ") + std::strerror(errno));
    }
    if (n == 0) return Status::IOError("pread: unexpected end of file");
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status pwritev_all(int fd, std::span<const struct iovec> iov, uint64_t offset) {
  return transfer_all(iov, "pwrite", [fd, &offset](const struct iovec* first, int count) {
    const ssize_t n = ::pwritev(fd, first, count, static_cast<off_t>(offset));
    if (n > 0) offset += static_cast<uint64_t>(n);
    return n;
  });
}

Status pwrite_all(int fd, std::span<const std::byte> data, uint64_t offset) {
  struct iovec one = one_iovec(data);
  return pwritev_all(fd, std::span(&one, 1), offset);
}

namespace {
Status errno_status(const std::string& what) {
  const int e = errno;
  return Status::IOError(what + ": " + std::strerror(e));
}
}  // namespace

Status fsync_fd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return errno_status("fsync " + what);
  return Status::OK();
}

Status fdatasync_fd(int fd, const std::string& what) {
  if (::fdatasync(fd) != 0) return errno_status("fdatasync " + what);
  return Status::OK();
}

Status fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_status("open dir " + dir);
  return fsync_fd(fd.get(), "dir " + dir);
}

}  // namespace portalbd
