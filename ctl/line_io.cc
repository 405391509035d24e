#include "ctl/line_io.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace portalbd::ctl {
namespace {

// Waits until `fd` is ready for `events`. false on timeout.
bool wait_ready(int fd, short events, const Deadline& deadline) {
  for (;;) {
    int timeout = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeout = static_cast<int>(std::min<long long>(left.count(), 1 << 30));
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, timeout);
    if (n > 0) return true;  // ready, or an error/hangup that the next read/send reports
    if (n == 0) continue;    // re-check the deadline
    if (errno != EINTR) return true;
  }
}

}  // namespace

Deadline deadline_after_ms(int timeout_ms) {
  if (timeout_ms <= 0) return std::nullopt;
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
}

LineReader::Outcome LineReader::next(std::string* line, const Deadline& deadline) {
  for (;;) {
    const size_t nl = buffer_.find('\n', scanned_);
    if (nl != std::string::npos) {
      if (nl > max_line_bytes_) return Outcome::kTooLong;
      line->assign(buffer_, 0, nl);
      buffer_.erase(0, nl + 1);
      scanned_ = 0;
      return Outcome::kLine;
    }
    scanned_ = buffer_.size();
    if (buffer_.size() > max_line_bytes_) return Outcome::kTooLong;
    if (eof_) {
      if (buffer_.empty()) return Outcome::kEof;
      // A last line without its '\n': accept it rather than lose a request.
      line->swap(buffer_);
      buffer_.clear();
      scanned_ = 0;
      return Outcome::kLine;
    }
    if (!wait_ready(fd_, POLLIN, deadline)) return Outcome::kTimeout;
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      eof_ = true;
    } else if (errno != EINTR && errno != EAGAIN) {
      error_ = std::strerror(errno);
      return Outcome::kError;
    }
  }
}

Status send_with_deadline(int fd, const std::string& data, const Deadline& deadline) {
  size_t done = 0;
  while (done < data.size()) {
    if (!wait_ready(fd, POLLOUT, deadline)) return Status::Unavailable("timed out sending");
    // MSG_NOSIGNAL: a vanished peer must give EPIPE, not kill the process.
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      done += static_cast<size_t>(n);
    } else if (errno != EINTR && errno != EAGAIN) {
      return Status::IOError(std::string("send: ") + std::strerror(errno));
    }
  }
  return Status::OK();
}

}  // namespace portalbd::ctl
