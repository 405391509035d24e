#include "nbd/socket_io.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

namespace portalbd::nbd {

ReadResult read_exact(int fd, std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::recv(fd, out.data() + done, out.size() - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      return done == 0 ? ReadResult::kEof : ReadResult::kTruncated;
    } else if (errno != EINTR) {
      return ReadResult::kError;
    }
  }
  return ReadResult::kOk;
}

ReadResult read_exact(Transport& in, std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = in.read_some(out.subspan(done));
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      return done == 0 ? ReadResult::kEof : ReadResult::kTruncated;
    } else {
      return ReadResult::kError;
    }
  }
  return ReadResult::kOk;
}

ReadResult discard_exact(int fd, uint64_t length) {
  std::array<std::byte, 64 * 1024> sink;
  while (length > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(length, sink.size()));
    ReadResult r = read_exact(fd, std::span(sink.data(), chunk));
    if (r != ReadResult::kOk) return r;
    length -= chunk;
  }
  return ReadResult::kOk;
}

ReadResult BufferedReader::read_exact(std::span<std::byte> out) {
  size_t done = std::min(end_ - begin_, out.size());
  std::memcpy(out.data(), buf_.data() + begin_, done);
  begin_ += done;
  while (done < out.size()) {
    const size_t want = out.size() - done;
    ssize_t n;
    if (want >= kDirectBytes) {
      n = in_.read_some(out.subspan(done));
      if (n > 0) done += static_cast<size_t>(n);
    } else {
      // The buffer is empty here: everything in it went to `out` first.
      begin_ = end_ = 0;
      n = in_.read_some(buf_);
      if (n > 0) {
        end_ = static_cast<size_t>(n);
        const size_t take = std::min(end_, want);
        std::memcpy(out.data() + done, buf_.data(), take);
        begin_ = take;
        done += take;
      }
    }
    if (n == 0) return done == 0 ? ReadResult::kEof : ReadResult::kTruncated;
    if (n < 0) return ReadResult::kError;  // read_some retries EINTR itself
  }
  return ReadResult::kOk;
}

size_t BufferedReader::wait_readable(size_t enough) {
  if (buffered() >= std::max<size_t>(enough, 1)) return buffered();
  return buffered() + in_.readable(/*wait=*/buffered() == 0);
}

ReadResult BufferedReader::discard_exact(uint64_t length) {
  std::array<std::byte, 64 * 1024> sink;
  while (length > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(length, sink.size()));
    ReadResult r = read_exact(std::span(sink.data(), chunk));
    if (r != ReadResult::kOk) return r;
    length -= chunk;
  }
  return ReadResult::kOk;
}

std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer (maybe not buf).
  return std::string(strerror_r(err, buf, sizeof buf));
}

}  // namespace portalbd::nbd
