// NbdConnection: one libnbd connection to one export, with every operation
// bounded by a deadline.
//
// Why deadlines: libnbd's synchronous calls wait forever on a server that
// stopped answering, and the kernel's FUSE requests have no timeout of their
// own. The view must answer EIO instead of hanging (issue 5), so everything
// here is driven through libnbd's aio calls and nbd_poll() until a deadline.
// After a timeout or a transport error the connection is closed for good:
// alive() turns false and the owner reconnects with a new NbdConnection.
//
// Ownership: owns its struct nbd_handle* (NbdHandlePtr). Move-only.
// Thread-safety: none; one thread at a time (ImageIo gives each connection
// its own worker thread).
#pragma once

#include <libnbd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuse/nbd_endpoint.h"
#include "src/util/status.h"

namespace portalbd::fuse {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct NbdHandleCloser {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using NbdHandlePtr = std::unique_ptr<nbd_handle, NbdHandleCloser>;

// One run of base:allocation block status.
struct Extent {
  uint64_t length = 0;
  bool hole = false;  // NBD_STATE_HOLE: unallocated (reads as zeroes)
};

class NbdConnection {
 public:
  // Connects to `endpoint` and opens `export_name` (NBD_OPT_GO), asking for
  // structured replies and the base:allocation meta context.
  // Errors: NotFound when the server has no such export, Unavailable when
  // the server cannot be reached or does not answer before `deadline`.
  static Result<NbdConnection> open(const NbdEndpoint& endpoint, const std::string& export_name, Deadline deadline);

  bool alive() const { return h_ != nullptr; }
  uint64_t size() const { return size_; }
  bool read_only() const { return read_only_; }

  // REQUIRES: alive(); offset + count <= size().
  Status pread(void* buf, size_t count, uint64_t offset, Deadline deadline);
  Status pwrite(const void* buf, size_t count, uint64_t offset, Deadline deadline);
  Status flush(Deadline deadline);
  Status trim(uint64_t count, uint64_t offset, Deadline deadline);
  Status zero(uint64_t count, uint64_t offset, Deadline deadline);
  // Appends the extents the server reports for [offset, offset + count); the
  // server may describe less than asked but at least one extent.
  Status block_status(uint64_t count, uint64_t offset, std::vector<Extent>* out, Deadline deadline);

 private:
  explicit NbdConnection(NbdHandlePtr h) : h_(std::move(h)) {}
  // Polls until command `cookie` completes; closes the connection on timeout
  // or transport failure.
  Status wait_command(int64_t cookie, Deadline deadline, const char* what);
  Status fail(const char* what);  // closes if dead; returns the libnbd error

  NbdHandlePtr h_;
  uint64_t size_ = 0;
  bool read_only_ = true;
};

// Drives `h` with nbd_poll() until `done()` is true. Unavailable on timeout,
// IOError with libnbd's message when the state machine fails.
template <typename Done>
Status poll_until(nbd_handle* h, Deadline deadline, const char* what, Done done);

// The libnbd error of the last failed call on this thread, as a Status.
Status last_nbd_error(const std::string& context);

// Sets up `h` for the endpoint's TLS settings (nothing when not enabled).
// REQUIRES: `h` is not connected yet.
Status apply_tls(nbd_handle* h, const NbdEndpoint& endpoint);

int remaining_ms(Deadline deadline);

template <typename Done>
Status poll_until(nbd_handle* h, Deadline deadline, const char* what, Done done) {
  while (!done()) {
    if (nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1) {
      return Status::Unavailable(std::string(what) + ": connection closed by the server");
    }
    const int left = remaining_ms(deadline);
    if (left <= 0) return Status::Unavailable(std::string(what) + ": timed out");
    if (nbd_poll(h, left) == -1) return last_nbd_error(what);
  }
  return Status::OK();
}

}  // namespace portalbd::fuse
