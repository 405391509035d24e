#include "nbd/transport.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "src/util/fd.h"

namespace portalbd::nbd {

ssize_t PlainTransport::read_some(std::span<std::byte> out) {
  for (;;) {
    const ssize_t n = ::recv(fd_, out.data(), out.size(), 0);
    if (n >= 0) return n;
    if (errno != EINTR) return -1;
  }
}

Status PlainTransport::send_all(std::span<const struct iovec> iov) { return portalbd::send_all(fd_, iov); }

size_t PlainTransport::readable(bool wait) {
  int queued = 0;
  if (::ioctl(fd_, FIONREAD, &queued) != 0) return 0;
  if (queued > 0 || !wait) return static_cast<size_t>(std::max(queued, 0));
  struct pollfd pfd {
    fd_, POLLIN, 0
  };
  while (::poll(&pfd, 1, -1) < 0) {
    if (errno != EINTR) return 0;
  }
  if (::ioctl(fd_, FIONREAD, &queued) != 0) return 0;
  return static_cast<size_t>(std::max(queued, 0));
}

void PlainTransport::set_receive_timeout(uint32_t timeout_ms) {
  struct timeval tv {};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  (void)setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

}  // namespace portalbd::nbd
