// Blocking socket reads for the NBD server: the helpers loop over short
// reads and EINTR and say how a read ended. Descriptors (UniqueFd) and
// whole-buffer sends (send_all, which never raises SIGPIPE, so a client that
// vanishes mid-reply only fails that call) are src/util/fd.h's.
//
// Thread-safety: the helpers are as safe as the descriptor they are given
// (the server serialises writers with a mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nbd/transport.h"

namespace portalbd::nbd {

// How a read ended. kEof: closed before the first byte (a clean end between
// messages); kTruncated: closed part-way through (a protocol error).
enum class ReadResult { kOk, kEof, kTruncated, kError };

// Reads exactly out.size() bytes.
ReadResult read_exact(int fd, std::span<std::byte> out);
ReadResult read_exact(Transport& in, std::span<std::byte> out);
// Reads and drops `length` bytes through a small fixed buffer, so a payload
// we refuse never costs memory proportional to its size.
ReadResult discard_exact(int fd, uint64_t length);
// Reads one connection's transport through a buffer, so a run of small requests costs one
// recv() for many of them instead of two each (header, then payload). Reads of
// kDirectBytes or more bypass the buffer (a 1 MiB write payload lands in its
// own vector, copied once). It may read ahead of what was asked by up to its
// capacity, so once it is in use every read of the socket must go through it.
// Not thread-safe: one reader thread owns it.
class BufferedReader {
 public:
  static constexpr size_t kCapacity = 128 * 1024;
  static constexpr size_t kDirectBytes = 32 * 1024;

  explicit BufferedReader(Transport& in) : in_(in), buf_(kCapacity) {}
  ReadResult read_exact(std::span<std::byte> out);
  ReadResult discard_exact(uint64_t length);
  // Bytes read from the socket and not consumed yet.
  size_t buffered() const { return end_ - begin_; }
  // Waits until a read would not block, then returns how many bytes can be
  // read now: those buffered plus those the kernel holds (or just those
  // buffered, without asking the transport, when they are `enough`). 0 means the
  // stream ended or failed (the next read says which). Lets a caller
  // allocate for bytes that have arrived rather than for bytes a header
  // promises.
  size_t wait_readable(size_t enough = 1);

 private:
  Transport& in_;
  std::vector<std::byte> buf_;
  size_t begin_ = 0, end_ = 0;  // buffered, not yet consumed: buf_[begin_, end_)
};

// "Address already in use" for errno values: strerror, thread-safe.
std::string errno_text(int err);

}  // namespace portalbd::nbd
