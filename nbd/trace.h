// Request traces: a text record of every NBD request a server answered (no
// data), for replaying a real workload later (bench/nbd_replay.cc).
//
// File format, version 1: a header line, comment lines starting with '#',
// then one line per request in the order the requests were answered:
//
//   portalbd-nbd-trace v1 start_unix_ms=1764035538123
//   # conn op offset length flags t_recv_us t_done_us err
//   1 WRITE 0 4096 0 1520 1788 0
//
// conn numbers connections from 1 in the order they finished the handshake;
// op is READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS (or
// CMD<n> for a command we do not know); flags are the request's command flags
// in decimal; times are microseconds since the recorder was opened (steady
// clock): when the header was read and when the reply was written; err is the
// NBD error code of the reply (0 = success). A trace cut short by overload ends
// with "# dropped N" (see TraceRecorder::record).
//
// TraceRecorder: record() formats a line into an in-memory buffer under a
// mutex and returns; one writer thread moves the buffer to the file every
// second or once it holds kWakeBytes, so request threads never wait on the
// disk. close() (or the destructor) writes everything and closes the file.
//
// Ownership: the recorder owns the file and its writer thread; the NBD server
// borrows it through ServerOptions::trace (a shared_ptr).
// Thread-safety: record(), new_connection(), now_us() and dropped() from any
// thread; close() from one thread, after which record() is a no-op.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "src/util/fd.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd::nbd {

inline constexpr std::string_view kTraceMagic = "portalbd-nbd-trace";
inline constexpr int kTraceVersion = 1;

struct TraceRecord {
  uint32_t conn = 0;
  uint16_t type = 0;   // proto::kCmd*
  uint16_t flags = 0;  // proto::kCmdFlag*
  uint64_t offset = 0;
  uint32_t length = 0;
  uint64_t t_recv_us = 0;
  uint64_t t_done_us = 0;
  uint32_t error = 0;  // NBD error code of the reply
};

// "WRITE_ZEROES"; "CMD9" for an unknown type.
std::string trace_op_name(uint16_t type);
// The line for `r`, newline included.
std::string format_trace_line(const TraceRecord& r);
// Parses one request line (no newline). False for a comment, the header, a
// blank or a malformed line.
bool parse_trace_line(std::string_view line, TraceRecord* out);
// True when `line` is a version-1 header.
bool is_trace_header(std::string_view line);

class TraceRecorder {
 public:
  // Creates (truncates) `path` and writes the header.
  static Result<std::shared_ptr<TraceRecorder>> Open(const std::string& path);
  ~TraceRecorder();  // close(), ignoring its status
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  // A fresh connection number: 1, 2, 3, ...
  uint32_t new_connection() EXCLUDES(mu_);
  // Microseconds since Open().
  uint64_t now_us() const;
  // Queues one line. When the writer has fallen kMaxPendingBytes behind (a
  // stalled disk), the record is counted as dropped instead: tracing must
  // never hold up the I/O it observes.
  void record(const TraceRecord& r) EXCLUDES(mu_);
  // Writes what is queued, a "# dropped N" line when needed, and closes the
  // file. Idempotent; the first call's status is kept.
  Status close() EXCLUDES(close_mu_, mu_);

  uint64_t dropped() const EXCLUDES(mu_);
  const std::string& path() const { return path_; }

  static constexpr size_t kWakeBytes = 256 * 1024;
  static constexpr size_t kMaxPendingBytes = 64 * 1024 * 1024;

 private:
  TraceRecorder(std::string path, UniqueFd fd);
  void writer_main() EXCLUDES(mu_);

  const std::string path_;
  const int64_t start_steady_ns_;
  UniqueFd fd_;  // written by the writer thread only; closed by close()

  mutable Mutex mu_;
  CondVar wake_;
  std::string pending_ GUARDED_BY(mu_);  // lines not yet written
  uint64_t dropped_ GUARDED_BY(mu_) = 0;
  uint32_t connections_ GUARDED_BY(mu_) = 0;
  bool closed_ GUARDED_BY(mu_) = false;  // set by close(): record() turns into a no-op, the writer exits
  Status write_status_ GUARDED_BY(mu_);  // the first write error
  std::thread writer_;
  Mutex close_mu_;  // serialises close(); taken before mu_
  Status close_status_ GUARDED_BY(close_mu_);
};

}  // namespace portalbd::nbd
