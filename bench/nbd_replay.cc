// nbd_replay: replays a portalbd request trace (nbd/trace.h) against any NBD
// server and reports how fast it went.
//
//   nbd_replay [--timed] [--json] [--max-requests N] [--repeat N]
//              [--connections N] TRACE URI
//
// TRACE is a trace file ("-" for stdin; a name ending in .zst is read through
// `zstd -dc`); URI is an NBD URI (nbd+unix:///export?socket=PATH,
// nbd://host:port/export).
//
// Concurrency follows the trace (nbd/trace_plan.h): a request is issued once
// every request answered before it arrived has completed; all the others go
// out at once, each on the connection of its recorded connection (one libnbd
// handle per recorded connection), driven by one poll() loop over the
// handles. --connections N folds the recorded connections onto N handles
// (round-robin by connection), e.g. 1 for a server that takes one client at a
// time (qemu-nbd without --shared, where a second connect would wait forever). By default requests go out as soon as
// their dependencies allow
// (--as-fast-as-possible); --timed also holds each one until its recorded
// arrival time after the start. --repeat N replays the whole trace N times
// back to back (each pass starts when the last one has completed), so that a
// short trace can be timed.
//
// Data: writes send one fixed buffer of pseudo-random (incompressible) bytes;
// reads land in one scratch buffer and are discarded. Request flags are kept
// when the server supports them (FUA, FAST_ZERO, DF) and dropped otherwise;
// commands the server does not offer (TRIM, WRITE_ZEROES, CACHE,
// BLOCK_STATUS) are skipped and counted.
//
// Exit status: 0 done (even if some requests failed: they are counted), 1 a
// connection failed, 2 usage error, a bad trace, or a trace that reaches past
// the end of the target (no clamping: the replay would not be the workload).
#include <libnbd.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nbd/protocol.h"
#include "nbd/trace_plan.h"

namespace portalbd::nbd {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string trace_path, uri;
  bool timed = false, json = false;
  uint64_t max_requests = 0;
  uint64_t repeat = 1;
  uint64_t connections = 0;  // 0: one per recorded connection
};

int usage(const char* why) {
  if (why != nullptr) std::fprintf(stderr, "nbd_replay: %s\n", why);
  std::fprintf(stderr,
               "usage: nbd_replay [--as-fast-as-possible | --timed] [--json] [--max-requests N] [--repeat N]\n"
               "                  [--connections N] TRACE URI\n"
               "  TRACE  a portalbd trace (portalbd --trace FILE); '-' for stdin; *.zst is decompressed\n"
               "  URI    nbd+unix:///EXPORT?socket=PATH or nbd://HOST:PORT/EXPORT\n");
  return 2;
}

struct HandleDeleter {
  void operator()(struct nbd_handle* h) const { nbd_close(h); }
};
using Handle = std::unique_ptr<struct nbd_handle, HandleDeleter>;

struct Totals {
  uint64_t ops = 0, bytes_read = 0, bytes_written = 0, errors = 0, skipped_unsupported = 0;
  std::map<std::string, uint64_t> per_op;
};

class Replayer {
 public:
  Replayer(const ReplayPlan& plan, const Options& opt) : plan_(plan), opt_(opt), deps_(plan) {}

  // Connects one handle per recorded connection; false (after a message) on failure.
  bool connect() {
    const size_t count =
        opt_.connections > 0 ? std::min<size_t>(opt_.connections, plan_.connections.size()) : plan_.connections.size();
    for (size_t k = 0; k < plan_.connections.size(); ++k) slot_of_conn_[plan_.connections[k]] = k % count;
    for (size_t k = 0; k < count; ++k) {
      Handle h(nbd_create());
      if (!h) return fail_libnbd("nbd_create");
      if (std::any_of(plan_.requests.begin(), plan_.requests.end(),
                      [](const TraceRecord& r) { return r.type == proto::kCmdBlockStatus; })) {
        nbd_add_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION);
      }
      if (nbd_connect_uri(h.get(), opt_.uri.c_str()) != 0) return fail_libnbd(("connect " + opt_.uri).c_str());
      handles_.push_back(std::move(h));
    }
    if (handles_.empty()) return true;
    nbd_handle* h = handles_[0].get();
    size_bytes_ = static_cast<uint64_t>(nbd_get_size(h));
    can_fua_ = nbd_can_fua(h) == 1;
    can_trim_ = nbd_can_trim(h) == 1;
    can_zero_ = nbd_can_zero(h) == 1;
    can_fast_zero_ = nbd_can_fast_zero(h) == 1;
    can_cache_ = nbd_can_cache(h) == 1;
    can_df_ = nbd_can_df(h) == 1;
    can_flush_ = nbd_can_flush(h) == 1;
    can_status_ = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    return true;
  }

  uint64_t size_bytes() const { return size_bytes_; }

  // Issues every request and waits for all of them. False on a broken connection.
  bool run() {
    uint32_t max_write = 0;
    for (const TraceRecord& r : plan_.requests) {
      if (r.type == proto::kCmdWrite || r.type == proto::kCmdRead) max_write = std::max(max_write, r.length);
    }
    make_buffers(max_write);
    ctx_.resize(plan_.requests.size());
    start_ = Clock::now();
    for (uint64_t pass = 0; pass < opt_.repeat; ++pass) {
      deps_.reset();
      if (!run_pass()) return false;
    }
    end_ = Clock::now();
    for (auto& h : handles_) (void)nbd_shutdown(h.get(), 0);
    return true;
  }

  const Totals& totals() const { return totals_; }
  double elapsed_s() const { return std::chrono::duration<double>(end_ - start_).count(); }

 private:
  struct Context {
    Replayer* self;
    size_t index;
  };

  bool run_pass() {
    const auto pass_start = Clock::now();
    const uint64_t t0 = plan_.requests.empty() ? 0 : plan_.requests[0].t_recv_us;
    size_t next = 0;
    std::vector<struct pollfd> fds(handles_.size());
    while (deps_.completed() < plan_.requests.size()) {
      int timeout_ms = -1;
      while (next < plan_.requests.size() && deps_.ready(next)) {
        if (opt_.timed) {
          auto due = pass_start + std::chrono::microseconds(plan_.requests[next].t_recv_us - t0);
          auto now = Clock::now();
          if (due > now) {
            timeout_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count() + 1);
            break;
          }
        }
        if (!issue(next)) return false;
        ++next;
      }
      if (deps_.completed() == plan_.requests.size()) break;
      for (size_t s = 0; s < handles_.size(); ++s) {
        unsigned dir = nbd_aio_get_direction(handles_[s].get());
        fds[s] = {nbd_aio_get_fd(handles_[s].get()), 0, 0};
        if (dir & LIBNBD_AIO_DIRECTION_READ) fds[s].events |= POLLIN;
        if (dir & LIBNBD_AIO_DIRECTION_WRITE) fds[s].events |= POLLOUT;
      }
      if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
        std::perror("nbd_replay: poll");
        return false;
      }
      for (size_t s = 0; s < handles_.size(); ++s) {
        int rc = 0;
        if (fds[s].revents & (POLLIN | POLLHUP | POLLERR)) rc = nbd_aio_notify_read(handles_[s].get());
        if (rc == 0 && (fds[s].revents & POLLOUT)) rc = nbd_aio_notify_write(handles_[s].get());
        if (rc != 0) return fail_libnbd("connection");
      }
    }
    return true;
  }

  static int on_complete(void* user_data, int* error) {
    auto* c = static_cast<Context*>(user_data);
    Replayer* self = c->self;
    const TraceRecord& r = self->plan_.requests[c->index];
    if (*error != 0) {
      ++self->totals_.errors;
      if (self->totals_.errors <= 5) {
        std::fprintf(stderr, "nbd_replay: %s at %" PRIu64 " (%u bytes) failed: %s\n", trace_op_name(r.type).c_str(),
                     r.offset, r.length, std::strerror(*error));
      }
    } else if (r.type == proto::kCmdRead) {
      self->totals_.bytes_read += r.length;
    } else if (r.type == proto::kCmdWrite) {
      self->totals_.bytes_written += r.length;
    }
    ++self->totals_.ops;
    self->deps_.complete(c->index);
    return 1;  // retire the command
  }

  static int on_extent(void*, const char*, uint64_t, uint32_t*, size_t, int*) { return 0; }

  void make_buffers(uint32_t max_len) {
    write_buf_.resize(max_len);
    uint64_t x = 0x9e3779b97f4a7c15ull;  // xorshift64: the same bytes on every run
    for (size_t i = 0; i < write_buf_.size(); ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      write_buf_[i] = static_cast<char>(x >> 56);
    }
    read_buf_.resize(max_len);
  }

  // Starts request i, or skips it when the server lacks the command.
  bool issue(size_t i) {
    const TraceRecord& r = plan_.requests[i];
    nbd_handle* h = handles_[slot_of_conn_.at(r.conn)].get();
    ctx_[i] = {this, i};
    nbd_completion_callback done{on_complete, &ctx_[i], nullptr};
    uint32_t flags = 0;
    if (can_fua_ && (r.flags & proto::kCmdFlagFua)) flags |= LIBNBD_CMD_FLAG_FUA;
    int64_t cookie = 0;
    switch (r.type) {
      case proto::kCmdRead:
        if (can_df_ && (r.flags & proto::kCmdFlagDf)) flags |= LIBNBD_CMD_FLAG_DF;
        cookie = nbd_aio_pread(h, read_buf_.data(), r.length, r.offset, done, flags);
        break;
      case proto::kCmdWrite: cookie = nbd_aio_pwrite(h, write_buf_.data(), r.length, r.offset, done, flags); break;
      case proto::kCmdFlush:
        if (!can_flush_) return skip(i);
        cookie = nbd_aio_flush(h, done, 0);
        break;
      case proto::kCmdTrim:
        if (!can_trim_) return skip(i);
        cookie = nbd_aio_trim(h, r.length, r.offset, done, flags);
        break;
      case proto::kCmdWriteZeroes:
        if (!can_zero_) return skip(i);
        if (r.flags & proto::kCmdFlagNoHole) flags |= LIBNBD_CMD_FLAG_NO_HOLE;
        if (can_fast_zero_ && (r.flags & proto::kCmdFlagFastZero)) flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
        cookie = nbd_aio_zero(h, r.length, r.offset, done, flags);
        break;
      case proto::kCmdCache:
        if (!can_cache_) return skip(i);
        cookie = nbd_aio_cache(h, r.length, r.offset, done, 0);
        break;
      case proto::kCmdBlockStatus:
        if (!can_status_) return skip(i);
        cookie = nbd_aio_block_status(h, r.length, r.offset, nbd_extent_callback{on_extent, nullptr, nullptr}, done,
                                      (r.flags & proto::kCmdFlagReqOne) ? LIBNBD_CMD_FLAG_REQ_ONE : 0);
        break;
      default: return skip(i);
    }
    if (cookie == -1) return fail_libnbd(("issue " + trace_op_name(r.type)).c_str());
    ++totals_.per_op[trace_op_name(r.type)];
    return true;
  }

  // A skipped request counts as complete at once, so its dependants proceed.
  bool skip(size_t i) {
    ++totals_.skipped_unsupported;
    deps_.complete(i);
    return true;
  }

  bool fail_libnbd(const char* what) {
    std::fprintf(stderr, "nbd_replay: %s: %s\n", what, nbd_get_error());
    return false;
  }

  const ReplayPlan& plan_;
  const Options& opt_;
  DependencyTracker deps_;
  std::vector<Handle> handles_;
  std::map<uint32_t, size_t> slot_of_conn_;
  std::vector<Context> ctx_;  // sized once: completion callbacks hold pointers into it
  std::vector<char> write_buf_, read_buf_;
  uint64_t size_bytes_ = 0;
  bool can_fua_ = false, can_trim_ = false, can_zero_ = false, can_fast_zero_ = false, can_cache_ = false,
       can_df_ = false, can_flush_ = false, can_status_ = false;
  Totals totals_;
  Clock::time_point start_, end_;
};

Result<ReplayPlan> load_plan(const Options& opt) {
  if (opt.trace_path == "-") return plan_replay(std::cin, opt.max_requests);
  if (opt.trace_path.ends_with(".zst")) {
    std::string cmd = "zstd -dc -- '" + opt.trace_path + "'";
    if (opt.trace_path.find('\'') != std::string::npos) return Status::InvalidArgument("quote in trace path");
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (pipe == nullptr) return Status::IOError("cannot run " + cmd);
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
    if (::pclose(pipe) != 0) return Status::IOError(cmd + " failed");
    std::istringstream in(std::move(text));
    return plan_replay(in, opt.max_requests);
  }
  std::ifstream in(opt.trace_path);
  if (!in) return Status::IOError("cannot open " + opt.trace_path);
  return plan_replay(in, opt.max_requests);
}

void report(const Options& opt, const ReplayPlan& plan, const Replayer& rep) {
  const Totals& t = rep.totals();
  const double s = std::max(rep.elapsed_s(), 1e-9);
  const double mib = 1024.0 * 1024.0;
  const double traced_s =
      plan.requests.empty() ? 0 : (plan.requests.back().t_recv_us - plan.requests.front().t_recv_us) / 1e6;
  if (opt.json) {
    std::printf("{\"trace\": \"%s\", \"mode\": \"%s\", \"repeat\": %" PRIu64 ", \"requests\": %zu, \"ops\": %" PRIu64
                ", \"errors\": %" PRIu64 ", \"skipped_unsupported\": %" PRIu64
                ", \"elapsed_s\": %.6f"
                ", \"ops_per_s\": %.1f, \"read_mib_s\": %.2f, \"write_mib_s\": %.2f, \"bytes_read\": %" PRIu64
                ", \"bytes_written\": %" PRIu64 ", \"connections\": %zu, \"traced_s\": %.3f, \"per_op\": {",
                opt.trace_path.c_str(), opt.timed ? "timed" : "as-fast-as-possible", opt.repeat, plan.requests.size(),
                t.ops, t.errors, t.skipped_unsupported, s, t.ops / s, t.bytes_read / mib / s, t.bytes_written / mib / s,
                t.bytes_read, t.bytes_written, plan.connections.size(), traced_s);
    const char* sep = "";
    for (const auto& [op, n] : t.per_op) {
      std::printf("%s\"%s\": %" PRIu64, sep, op.c_str(), n);
      sep = ", ";
    }
    std::printf("}}\n");
    return;
  }
  std::printf("replayed %" PRIu64 " requests (%" PRIu64
              " pass(es)) of %zu recorded connection(s) in %.3f s (%s; recorded over %.3f s)\n",
              t.ops, opt.repeat, plan.connections.size(), s, opt.timed ? "timed" : "as fast as possible", traced_s);
  std::printf("  %.1f ops/s, read %.2f MiB/s (%.1f MiB), written %.2f MiB/s (%.1f MiB)\n", t.ops / s,
              t.bytes_read / mib / s, t.bytes_read / mib, t.bytes_written / mib / s, t.bytes_written / mib);
  std::printf("  ops:");
  for (const auto& [op, n] : t.per_op) std::printf(" %s=%" PRIu64, op.c_str(), n);
  std::printf("\n  errors %" PRIu64 ", skipped (unsupported by the server) %" PRIu64 ", left out of the trace: %" PRIu64
              " DISC, %" PRIu64 " failed when recorded%s\n",
              t.errors, t.skipped_unsupported, plan.skipped_disc, plan.skipped_failed,
              plan.limit_hit ? ", the rest past --max-requests" : "");
}

int replay_main(int argc, char** argv) {
  Options opt;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--timed") {
      opt.timed = true;
    } else if (a == "--as-fast-as-possible") {
      opt.timed = false;
    } else if (a == "--json") {
      opt.json = true;
    } else if (a == "--max-requests" && i + 1 < argc) {
      opt.max_requests = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--connections" && i + 1 < argc) {
      opt.connections = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--repeat" && i + 1 < argc) {
      opt.repeat = std::max<uint64_t>(1, std::strtoull(argv[++i], nullptr, 10));
    } else if (a == "-h" || a == "--help") {
      usage(nullptr);
      return 0;
    } else if (a.size() > 1 && a[0] == '-' && a != "-") {
      return usage(("unknown option " + a).c_str());
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return usage("expected TRACE and URI");
  opt.trace_path = positional[0];
  opt.uri = positional[1];

  auto plan = load_plan(opt);
  if (!plan.ok()) {
    std::fprintf(stderr, "nbd_replay: %s: %s\n", opt.trace_path.c_str(), plan.status().ToString().c_str());
    return 2;
  }
  Replayer rep(*plan, opt);
  if (!rep.connect()) return 1;
  if (plan->end_offset > rep.size_bytes()) {
    std::fprintf(stderr,
                 "nbd_replay: the trace reaches byte %" PRIu64 " but %s is only %" PRIu64
                 " bytes: use a target of at least %" PRIu64 " MiB (offsets are never clamped)\n",
                 plan->end_offset, opt.uri.c_str(), rep.size_bytes(), (plan->end_offset + (1 << 20) - 1) >> 20);
    return 2;
  }
  if (!rep.run()) return 1;
  report(opt, *plan, rep);
  return 0;
}

}  // namespace
}  // namespace portalbd::nbd

int main(int argc, char** argv) { return portalbd::nbd::replay_main(argc, argv); }
