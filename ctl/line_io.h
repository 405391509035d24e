// Newline-delimited I/O on a stream socket, the framing of the control
// protocol: LineReader splits what arrives into lines with an upper bound on
// line length; send_with_deadline() sends a whole buffer. Both take an
// optional deadline so that a client never hangs on a stuck daemon (what they
// add to plain reads and src/util/fd.h's send_all).
//
// Ownership: a LineReader borrows its fd; the caller keeps it open while the
// reader is used. Thread-safety: one thread per LineReader.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "src/util/status.h"

namespace portalbd::ctl {

using Deadline = std::optional<std::chrono::steady_clock::time_point>;  // nullopt: wait forever

// A deadline `timeout_ms` from now; <= 0 means none.
Deadline deadline_after_ms(int timeout_ms);

class LineReader {
 public:
  enum class Outcome {
    kLine,     // *line holds one line without its '\n'
    kEof,      // peer closed; no partial line left
    kTooLong,  // no '\n' within max_line_bytes: the stream cannot be resynchronised
    kTimeout,  // the deadline passed
    kError,    // read failed; see error()
  };

  LineReader(int fd, size_t max_line_bytes) : fd_(fd), max_line_bytes_(max_line_bytes) {}

  Outcome next(std::string* line, const Deadline& deadline = std::nullopt);
  // errno text of the last kError.
  const std::string& error() const { return error_; }

 private:
  int fd_;
  size_t max_line_bytes_;
  std::string buffer_;  // bytes received and not yet returned
  size_t scanned_ = 0;  // buffer_[0, scanned_) holds no '\n'
  bool eof_ = false;
  std::string error_;
};

// Sends all of `data`, waiting for the socket to take each part no later
// than `deadline`. IOError on failure (peer gone: EPIPE, never SIGPIPE),
// Unavailable when the deadline passes.
Status send_with_deadline(int fd, const std::string& data, const Deadline& deadline = std::nullopt);

}  // namespace portalbd::ctl
