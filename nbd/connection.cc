#include "nbd/connection.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <span>

#include "nbd/dispatch.h"
#include "nbd/handshake.h"
#include "nbd/reply.h"
#include "nbd/session.h"
#include "nbd/trace.h"
#include "src/log/log.h"
#include "src/util/clock.h"
#include "src/util/thread_name.h"

namespace portalbd::nbd {

namespace {
// The largest READ the reader thread may run itself (runs_inline, and reads
// the device serves from cache); bigger ones are copied and sent by workers,
// several side by side.
constexpr uint32_t kMaxInlineReadBytes = 64 << 10;
}  // namespace

Connection::Connection(UniqueFd fd, std::string peer, ExportProvider& exports, const ServerOptions& options,
                       StatsCounters& stats, PayloadBudget& payload_budget, const TlsServer* tls)
    : fd_(std::move(fd)),
      peer_(std::move(peer)),
      exports_(exports),
      options_(options),
      stats_(stats),
      payload_budget_(payload_budget),
      tls_(tls),
      connected_unix_ms_(now_unix_ms()) {}

void Connection::run() {
  auto logger = log::get("nbd");
  int fd;
  {
    MutexLock lock(&fd_mu_);  // only this thread changes fd_, at the end
    fd = fd_.get();
  }
  // A timed-out read fails like a broken socket.
  transport_ = std::make_unique<PlainTransport>(fd);
  transport_->set_receive_timeout(options_.handshake_timeout_ms);
  std::optional<Session> session =
      Handshake(transport_, fd, tls_, options_.handshake_timeout_ms, exports_, peer_, options_.max_request_bytes).run();
  // Transmission may idle for hours (a mounted filesystem): no timeout.
  if (session) transport_->set_receive_timeout(0);
  if (session) {
    {
      MutexLock lock(&mu_);
      export_name_ = session->export_name;
      tls_identity_ = session->tls_identity;
    }
    logger->info("NBD client connected peer={} export={} tls={} structured_replies={} read_only={}", peer_,
                 log::quote(session->export_name),
                 log::quote(session->tls_identity.empty() ? "off" : session->tls_identity), session->structured_replies,
                 session->device->read_only());
    request_loop(*session, *transport_);
    logger->info("NBD client disconnected peer={} export={}", peer_, log::quote(session->export_name));
  }
  transport_.reset();  // TLS: close_notify, while the socket is still open
  {
    MutexLock lock(&fd_mu_);
    fd_.reset();
  }
  finished_.store(true, std::memory_order_release);
}

void Connection::request_loop(const Session& session, Transport& io) {
  auto logger = log::get("nbd");
  ReplyWriter out(io);
  TraceRecorder* trace = options_.trace.get();
  if (trace != nullptr) trace_conn_ = trace->new_connection();
  ReplyNote note{trace};
  DispatchContext ctx{session, out, stats_, peer_, trace != nullptr ? &note : nullptr};

  // Workers start as requests queue up with none idle to take them, up to
  // workers_per_connection: a client that sends one request at a time costs
  // one thread, and a queue depth of 32 cold reads gets 32 at once.
  std::vector<std::thread> workers;
  const uint32_t max_workers = std::max<uint32_t>(1, options_.workers_per_connection);

  // Requests run on this thread hold their replies (see runs_inline) and
  // send them together before the reader could block: when the next header
  // is not buffered yet, before waiting for in-flight room, and every
  // kMaxHeldReplies or kMaxHeldBytes.
  DispatchContext inline_ctx = ctx;
  inline_ctx.hold_replies = true;
  constexpr size_t kMaxHeldReplies = 64;
  constexpr size_t kMaxHeldBytes = 256 << 10;
  BufferedReader in(io);
  for (;;) {
    if (out.held() > 0 && (in.buffered() < proto::kRequestHeaderBytes || out.held() >= kMaxHeldReplies ||
                           out.held_bytes() >= kMaxHeldBytes)) {
      if (!out.flush_held()) break;
    }
    {
      MutexLock lock(&mu_);
      if (!has_room_locked() && out.held() > 0) {
        lock.unlock();
        if (!out.flush_held()) break;
        lock.lock();
      }
      while (!out.broken() && !has_room_locked()) space_ready_.wait(lock);
    }
    if (out.broken()) break;

    std::array<std::byte, proto::kRequestHeaderBytes> header;
    ReadResult rr = in.read_exact(header);
    if (rr == ReadResult::kEof) break;  // client hung up between requests (or stop())
    if (rr != ReadResult::kOk) {
      logger->warn("NBD protocol error: truncated request peer={}", peer_);
      break;
    }
    Request r;
    if (!parse_request(header, &r)) {
      logger->warn("NBD protocol error: bad request magic peer={}", peer_);
      break;
    }
    const uint64_t t_recv_us = trace != nullptr ? trace->now_us() : 0;
    uint32_t error = validate_request(r, session);

    std::vector<std::byte> payload;
    PayloadBudget::Claim payload_claim;
    if (has_payload(r)) {
      if (in.buffered() < r.length && !out.flush_held()) break;
      if (error == 0) {
        payload_claim = payload_budget_.start_reading();
        rr = read_payload(in, out, r.length, payload_claim, &payload);
        payload_claim.finish_reading();
      } else {
        // Refused writes still carry their data: drop it to stay in sync.
        rr = in.discard_exact(r.length);
      }
      if (rr != ReadResult::kOk) {
        logger->warn("NBD protocol error: truncated write payload peer={} length={}", peer_, r.length);
        break;
      }
    }
    if (error != 0) {
      logger->debug("NBD request refused peer={} command={} flags={:#x} offset={} length={}", peer_,
                    command_name(r.type), r.flags, r.offset, r.length);
      bool sent = reply_error(ctx, r, error, std::string("invalid ") + command_name(r.type) + " request");
      trace_request(r, t_recv_us, note);
      if (!sent) break;
      continue;
    }
    if (r.type == proto::kCmdDisc) {  // soft disconnect: answer what is queued, then close
      trace_request(r, t_recv_us, ReplyNote{trace, 0, t_recv_us});  // DISC has no reply
      break;
    }

    if (runs_inline(r, *session.device)) {
      // A sync of the local journal waits a little. Held answers to reads go
      // out first; answers to writes ride with the FLUSH's, in one send: their
      // client is most likely waiting for the FLUSH too (a filesystem's
      // fsync), and one wake-up of it costs less than two.
      const bool syncs = r.type == proto::kCmdFlush || (r.flags & proto::kCmdFlagFua) != 0;
      if (syncs && !session.device->flush_is_free() && out.holds_read_data() && !out.flush_held()) break;
      const bool sent = execute_request(inline_ctx, r, std::move(payload));
      payload_claim.reset();
      if (!sent) break;
      trace_request(r, t_recv_us, note);
      continue;
    }
    if (r.type == proto::kCmdRead && r.length <= kMaxInlineReadBytes) {
      // Small reads the device serves from memory (or cached pages) cost less
      // than a hand-off too; the others go to a worker below.
      const CachedRead cached = execute_read_if_cached(inline_ctx, r);
      if (cached == CachedRead::kBroken) break;
      if (cached == CachedRead::kSent) {
        trace_request(r, t_recv_us, note);
        continue;
      }
    }
    const BlockDevice::FlushTicket ticket =
        r.type == proto::kCmdFlush ? session.device->flush_ticket() : BlockDevice::kFlushEverything;
    {
      MutexLock lock(&mu_);
      inflight_bytes_ += cost_bytes(r);
      ++inflight_requests_;
      queue_.push_back(Work{r, std::move(payload), std::move(payload_claim), t_recv_us, ticket});
      if (queue_.size() > idle_workers_ && workers.size() < max_workers) {
        workers.emplace_back([&] {
          name_this_thread("nbd-worker");
          worker_main(session, out);
        });
      }
    }
    work_ready_.notify_one();
  }

  (void)out.flush_held();  // answered requests are answered, even on the way out
  // Drain: workers finish the queue, then see closing_ and exit.
  {
    MutexLock lock(&mu_);
    closing_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& t : workers) t.join();
}

void Connection::worker_main(const Session& session, ReplyWriter& out) {
  ReplyNote note{options_.trace.get()};
  DispatchContext ctx{session, out, stats_, peer_, note.clock != nullptr ? &note : nullptr};
  for (;;) {
    Work work;
    {
      MutexLock lock(&mu_);
      ++idle_workers_;
      while (queue_.empty() && !closing_) work_ready_.wait(lock);
      --idle_workers_;
      if (queue_.empty()) return;  // closing_ and nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    // Once the socket is dead, executing would be wasted work (the engine
    // still sees every write that was answered, because none will be).
    bool ok = !out.broken() && execute_request(ctx, work.request, std::move(work.payload), work.flush_ticket);
    work.payload_claim.reset();
    if (ok) trace_request(work.request, work.t_recv_us, note);
    if (!ok) shutdown_all();  // wake the reader so the connection winds down
    {
      MutexLock lock(&mu_);
      inflight_bytes_ -= cost_bytes(work.request);
      --inflight_requests_;
    }
    space_ready_.notify_one();
  }
}

bool Connection::has_room_locked() const {
  return inflight_bytes_ < options_.max_inflight_bytes &&
         inflight_requests_ < std::max<uint32_t>(1, options_.max_inflight_requests);
}

ReadResult Connection::read_payload(BufferedReader& in, ReplyWriter& out, uint32_t length, PayloadBudget::Claim& claim,
                                    std::vector<std::byte>* payload) {
  // The first allocation: a payload of up to this size gets exactly one
  // buffer of its own length (the common case, no copies); a larger one
  // doubles from here, so it is copied less than once over in all.
  constexpr size_t kFirstBufferBytes = 1 << 20;
  payload->clear();
  while (payload->size() < length) {
    // Allocate for bytes that have arrived, not for what the header says.
    const size_t ready = in.wait_readable(length - payload->size());
    if (payload->size() == payload->capacity()) {
      const size_t capacity = payload->capacity();
      const size_t grown = std::min<size_t>(length, std::max(kFirstBufferBytes, 2 * capacity));
      const uint64_t more = grown - capacity;
      if (!claim.try_grow(more)) {
        StatsCounters::add(stats_.payload_waits);
        // Waiting may take a while: answer what the client may be waiting for.
        if (!out.flush_held()) return ReadResult::kError;
        if (!claim.grow(more, stopping_)) return ReadResult::kError;
      }
      payload->reserve(grown);
    }
    // What is readable, within the buffer; at least one byte, so that a
    // stream that ended is seen by the read below.
    const size_t step = std::min(payload->capacity() - payload->size(), std::max<size_t>(ready, 1));
    const size_t at = payload->size();
    payload->resize(at + step);
    const ReadResult rr = in.read_exact(std::span(payload->data() + at, step));
    if (rr != ReadResult::kOk) return rr == ReadResult::kEof ? ReadResult::kTruncated : rr;
  }
  return ReadResult::kOk;
}

void Connection::cancel_budget_waits() {
  stopping_.store(true, std::memory_order_release);
  payload_budget_.wake_waiters();
}

void Connection::trace_request(const Request& r, uint64_t t_recv_us, const ReplyNote& note) const {
  TraceRecorder* trace = options_.trace.get();
  if (trace == nullptr) return;
  trace->record(TraceRecord{trace_conn_, r.type, r.flags, r.offset, r.length, t_recv_us, note.sent_us, note.error});
}

bool Connection::runs_inline(const Request& r, const BlockDevice& device) {
  // Writes without FUA, trims and zeroes only touch the engine's write buffer:
  // a few microseconds, less than handing them to a worker thread costs. A
  // full buffer makes the write wait, which holds back reading the next
  // request: the back-pressure a full buffer should give anyway. FLUSH and
  // FUA join them when the device has nothing to wait for (memory://), and
  // so do small reads when they are memory copies. Big reads still go to the
  // workers, which copy and send several of them side by side. (Small reads
  // on other devices are offered to read_if_cached() before the hand-off.)
  // A FLUSH, and FUA on small requests, that cost one fdatasync of the local
  // journal run here too: a database waits for each one, and a hand-off to a
  // worker and back would add two thread wake-ups to the sync.
  if (r.type == proto::kCmdRead) return device.reads_from_memory() && r.length <= kMaxInlineReadBytes;
  const bool buffered = r.type == proto::kCmdWrite || r.type == proto::kCmdTrim || r.type == proto::kCmdWriteZeroes;
  if (device.flush_is_free()) return buffered || r.type == proto::kCmdFlush;
  if (r.type == proto::kCmdFlush) return device.flush_is_local();
  if ((r.flags & proto::kCmdFlagFua) == 0) return buffered;
  return buffered && r.length <= kMaxInlineReadBytes && device.flush_is_local();
}

uint64_t Connection::cost_bytes(const Request& r) {
  return (r.type == proto::kCmdRead || r.type == proto::kCmdWrite) ? r.length : 0;
}

void Connection::shutdown_read() {
  {
    MutexLock lock(&fd_mu_);
    if (fd_) ::shutdown(fd_.get(), SHUT_RD);
  }
  cancel_budget_waits();
}

void Connection::shutdown_all() {
  {
    MutexLock lock(&fd_mu_);
    if (fd_) ::shutdown(fd_.get(), SHUT_RDWR);
  }
  cancel_budget_waits();
}

ClientInfo Connection::info() const {
  MutexLock lock(&mu_);
  return ClientInfo{peer_, export_name_, tls_identity_, connected_unix_ms_};
}

}  // namespace portalbd::nbd
