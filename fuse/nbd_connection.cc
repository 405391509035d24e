#include "fuse/nbd_connection.h"

#include <cerrno>
#include <climits>
#include <fstream>

namespace portalbd::fuse {

int remaining_ms(Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

Status last_nbd_error(const std::string& context) {
  const char* msg = nbd_get_error();
  const int err = nbd_get_errno();
  std::string text = context + ": " + (msg != nullptr ? msg : "unknown libnbd error");
  if (err == ENOENT) return Status::NotFound(text);
  if (err == ECONNREFUSED || err == ENOTCONN || err == ETIMEDOUT || err == ECONNRESET || err == EPIPE) {
    return Status::Unavailable(text);
  }
  return Status::IOError(text);
}

namespace {

// The identity of a PSK file's first key ("alice" of "alice:00ff..."), "" if none.
std::string first_psk_identity(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos && colon > 0) return line.substr(0, colon);
  }
  return "";
}

}  // namespace

Status apply_tls(nbd_handle* h, const NbdEndpoint& endpoint) {
  const NbdTls& tls = endpoint.tls;
  if (!tls.enabled) return Status::OK();
  const std::string where = "TLS settings for " + endpoint.describe();
  if (nbd_set_tls(h, LIBNBD_TLS_REQUIRE) == -1) return last_nbd_error(where);
  if (!tls.psk_file.empty()) {
    const std::string user = tls.username.empty() ? first_psk_identity(tls.psk_file) : tls.username;
    if (user.empty()) return Status::InvalidArgument(where + ": no identity:hexkey line in " + tls.psk_file);
    if (nbd_set_tls_psk_file(h, tls.psk_file.c_str()) == -1 || nbd_set_tls_username(h, user.c_str()) == -1) {
      return last_nbd_error(where);
    }
  } else if (!tls.certificates.empty()) {
    if (nbd_set_tls_certificates(h, tls.certificates.c_str()) == -1) return last_nbd_error(where);
  }
  return Status::OK();
}

Result<NbdConnection> NbdConnection::open(const NbdEndpoint& endpoint, const std::string& export_name,
                                          Deadline deadline) {
  NbdHandlePtr h(nbd_create());
  if (!h) return last_nbd_error("nbd_create");
  const std::string where = "NBD export '" + export_name + "' at " + endpoint.describe();
  if (nbd_set_export_name(h.get(), export_name.c_str()) == -1 ||
      nbd_add_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) {
    return last_nbd_error(where);
  }
  PBD_RETURN_IF_ERROR(apply_tls(h.get(), endpoint));
  const int rc = endpoint.unix_path.empty() ? nbd_aio_connect_tcp(h.get(), endpoint.host.c_str(), endpoint.port.c_str())
                                            : nbd_aio_connect_unix(h.get(), endpoint.unix_path.c_str());
  if (rc == -1) return last_nbd_error(where);
  nbd_handle* raw = h.get();
  Status st = poll_until(raw, deadline, where.c_str(), [raw] { return nbd_aio_is_ready(raw) == 1; });
  if (!st.ok()) {
    // OPT_GO refused for an export that does not exist (e.g. a deleted snapshot).
    if (st.message().find("No such file") != std::string::npos || nbd_get_errno() == ENOENT) {
      return Status::NotFound(st.message());
    }
    return st;
  }
  NbdConnection c(std::move(h));
  const int64_t size = nbd_get_size(raw);
  if (size < 0) return last_nbd_error(where);
  c.size_ = static_cast<uint64_t>(size);
  c.read_only_ = nbd_is_read_only(raw) == 1;
  return c;
}

Status NbdConnection::fail(const char* what) {
  Status st = last_nbd_error(what);
  if (h_ && (nbd_aio_is_dead(h_.get()) == 1 || nbd_aio_is_closed(h_.get()) == 1)) h_.reset();
  return st;
}

Status NbdConnection::wait_command(int64_t cookie, Deadline deadline, const char* what) {
  if (cookie == -1) return fail(what);
  for (;;) {
    const int done = nbd_aio_command_completed(h_.get(), static_cast<uint64_t>(cookie));
    if (done == 1) return Status::OK();
    if (done == -1) {
      Status st = fail(what);
      return st;
    }
    const int left = remaining_ms(deadline);
    if (left <= 0) {
      // The command is still in flight; the handle cannot be reused safely.
      h_.reset();
      return Status::Unavailable(std::string(what) + ": no answer from the NBD server in time");
    }
    if (nbd_poll(h_.get(), left) == -1) {
      Status st = last_nbd_error(what);
      h_.reset();
      return st;
    }
  }
}

Status NbdConnection::pread(void* buf, size_t count, uint64_t offset, Deadline deadline) {
  return wait_command(nbd_aio_pread(h_.get(), buf, count, offset, NBD_NULL_COMPLETION, 0), deadline, "read");
}

Status NbdConnection::pwrite(const void* buf, size_t count, uint64_t offset, Deadline deadline) {
  return wait_command(nbd_aio_pwrite(h_.get(), buf, count, offset, NBD_NULL_COMPLETION, 0), deadline, "write");
}

Status NbdConnection::flush(Deadline deadline) {
  return wait_command(nbd_aio_flush(h_.get(), NBD_NULL_COMPLETION, 0), deadline, "flush");
}

Status NbdConnection::trim(uint64_t count, uint64_t offset, Deadline deadline) {
  return wait_command(nbd_aio_trim(h_.get(), count, offset, NBD_NULL_COMPLETION, 0), deadline, "trim");
}

Status NbdConnection::zero(uint64_t count, uint64_t offset, Deadline deadline) {
  return wait_command(nbd_aio_zero(h_.get(), count, offset, NBD_NULL_COMPLETION, 0), deadline, "zero");
}

namespace {

struct ExtentSink {
  std::vector<Extent>* out;
  bool failed = false;
};

// libnbd callback: must not throw (C boundary), so allocation failure is
// recorded and reported after the command completes.
int on_extents(void* user_data, const char* metacontext, uint64_t /*offset*/, uint32_t* entries, size_t nr_entries,
               int* /*error*/) {
  auto* sink = static_cast<ExtentSink*>(user_data);
  if (std::string_view(metacontext) != LIBNBD_CONTEXT_BASE_ALLOCATION) return 0;
  try {
    for (size_t i = 0; i + 1 < nr_entries; i += 2) {
      sink->out->push_back(Extent{entries[i], (entries[i + 1] & LIBNBD_STATE_HOLE) != 0});
    }
  } catch (...) {
    sink->failed = true;
  }
  return 0;
}

}  // namespace

Status NbdConnection::block_status(uint64_t count, uint64_t offset, std::vector<Extent>* out, Deadline deadline) {
  ExtentSink sink{out};
  const size_t before = out->size();
  nbd_extent_callback cb{on_extents, &sink, nullptr};
  PBD_RETURN_IF_ERROR(wait_command(nbd_aio_block_status(h_.get(), count, offset, cb, NBD_NULL_COMPLETION, 0), deadline,
                                   "block status"));
  if (sink.failed) return Status::IOError("block status: out of memory");
  if (out->size() == before) return Status::IOError("block status: the server described no extent");
  return Status::OK();
}

}  // namespace portalbd::fuse
