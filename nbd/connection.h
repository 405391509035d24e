// Connection: the whole life of one client socket, run on its own thread.
//
//   run():  Handshake (nbd/handshake.h) over the plain socket, which
//           STARTTLS may replace with a TLS session (nbd/tls.h)
//           -> request loop: read header, validate, read/discard payload,
//              queue the request for the worker pool
//           -> drain: wait for queued and running requests to be answered
//           -> close the socket.
//
// Tracing (ServerOptions::trace): the reader stamps each request when its
// header is read and again just before its reply is written (ReplyNote);
// whoever sent the reply then records it, so a line is written for every
// request that got an answer, refused ones included, and for DISC. Lines are
// thus in roughly the order of answers, not of arrival.
//
// Pipelining: the reader thread parses and runs the requests that cost less
// than a hand-off (runs_inline: buffered writes, small reads and FLUSH on a
// device that serves them from memory, FLUSH and small FUA requests that
// sync a local journal), holding their replies to send in one batch; up to `workers_per_connection` worker threads
// (started as the queue outgrows the idle ones) execute the rest in parallel and reply out of order through the
// ReplyWriter. Back-pressure: the reader stops taking new requests while the in-flight READ/WRITE bytes reach
// max_inflight_bytes (one request may overshoot it by at most max_request_bytes) or max_inflight_requests are in
// flight, so a client cannot make us buffer without bound.
//
// WRITE payloads (read_payload): the buffer is grown as the client's bytes
// arrive, never sized from the header: first min(length, 1 MiB) once a byte
// is readable, then doubled (capped at the length) as it fills. Every growth
// is claimed from the server-wide PayloadBudget first, and the reader waits
// there when the budget is spent; the claim travels with the request and is
// released once it has been executed. So a header that promises 64 MiB and
// sends nothing costs nothing (issue 18).
//
// A malformed stream (bad magic, truncated header or payload) closes this
// connection only. Everything else gets an error reply and the loop goes on.
//
// Ownership: owns the socket and the transport over it. The Server keeps a shared_ptr while the thread
// runs, and may call shutdown_read()/shutdown_all() from its own thread.
// Borrows the server's PayloadBudget and TlsServer, which outlive it.
// Lock order: mu_ (queue, accounting, export name) and fd_mu_ are never held
// together; ReplyWriter's mutex and the PayloadBudget's are taken with
// neither held (a claim is only moved, never grown or released, under mu_).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "nbd/dispatch.h"
#include "nbd/export_provider.h"
#include "nbd/payload_budget.h"
#include "nbd/reply.h"
#include "nbd/request.h"
#include "nbd/server.h"
#include "nbd/session.h"
#include "nbd/socket_io.h"
#include "nbd/stats.h"
#include "nbd/tls.h"
#include "nbd/transport.h"
#include "src/util/fd.h"
#include "src/util/mutex.h"

namespace portalbd::nbd {

class Connection {
 public:
  Connection(UniqueFd fd, std::string peer, ExportProvider& exports, const ServerOptions& options, StatsCounters& stats,
             PayloadBudget& payload_budget, const TlsServer* tls = nullptr);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The connection's whole life; returns once the socket is closed and every
  // worker has been joined.
  void run() EXCLUDES(mu_, fd_mu_);

  // Stop reading requests; those already read are still answered.
  void shutdown_read() EXCLUDES(fd_mu_);
  // Stop everything now (a client that will not read its replies).
  void shutdown_all() EXCLUDES(fd_mu_);

  bool finished() const { return finished_.load(std::memory_order_acquire); }
  ClientInfo info() const EXCLUDES(mu_);

 private:
  struct Work {
    Request request;
    std::vector<std::byte> payload;
    PayloadBudget::Claim payload_claim;  // the payload's share of the budget, released once executed
    uint64_t t_recv_us = 0;              // for the trace: when the header was read
    // A FLUSH covers the writes answered before it was received, not before
    // a worker got to it: the device's ticket for those, taken on receipt.
    BlockDevice::FlushTicket flush_ticket = BlockDevice::kFlushEverything;
  };

  // Reads, runs and queues requests from `io` until the stream ends, then
  // drains the workers.
  void request_loop(const Session& session, Transport& io) EXCLUDES(mu_);
  // Under the in-flight caps: the reader may take another request.
  bool has_room_locked() const REQUIRES(mu_);
  // Reads `length` payload bytes into `payload`, growing it (and `claim`)
  // only as bytes arrive. Held replies are sent before it waits for budget.
  // Not kOk: the stream ended or failed, or the connection is shutting down.
  ReadResult read_payload(BufferedReader& in, ReplyWriter& out, uint32_t length, PayloadBudget::Claim& claim,
                          std::vector<std::byte>* payload);
  // Marks the connection as stopping and wakes a reader waiting for budget.
  void cancel_budget_waits();
  void worker_main(const Session& session, ReplyWriter& out) EXCLUDES(mu_);
  static uint64_t cost_bytes(const Request& r);
  // Requests the reader thread executes itself instead of queueing.
  static bool runs_inline(const Request& r, const BlockDevice& device);
  // Appends one request to options_.trace (when tracing), answered as `note` says.
  void trace_request(const Request& r, uint64_t t_recv_us, const ReplyNote& note) const;

  mutable Mutex fd_mu_;
  UniqueFd fd_ GUARDED_BY(fd_mu_);  // closed at the end of run()
  const std::string peer_;
  ExportProvider& exports_;
  const ServerOptions& options_;
  StatsCounters& stats_;
  PayloadBudget& payload_budget_;
  const TlsServer* const tls_;  // null: TLS off
  // The socket's byte stream: plain, then maybe TLS. Only the connection's
  // own thread touches the pointer; destroyed before fd_ is closed.
  std::unique_ptr<Transport> transport_;
  const int64_t connected_unix_ms_;
  std::atomic<bool> finished_{false};
  std::atomic<bool> stopping_{false};  // set by shutdown_*: a reader stops waiting for budget
  uint32_t trace_conn_ = 0;            // set before the workers start, read-only after

  mutable Mutex mu_;
  CondVar work_ready_;   // workers wait: queue non-empty or closing_
  CondVar space_ready_;  // reader waits: under the in-flight caps
  std::deque<Work> queue_ GUARDED_BY(mu_);
  uint32_t idle_workers_ GUARDED_BY(mu_) = 0;    // workers waiting for work_ready_
  uint64_t inflight_bytes_ GUARDED_BY(mu_) = 0;  // queued + running
  uint32_t inflight_requests_ GUARDED_BY(mu_) = 0;
  bool closing_ GUARDED_BY(mu_) = false;  // no more work will come
  std::string export_name_ GUARDED_BY(mu_);
  std::string tls_identity_ GUARDED_BY(mu_);  // "" in the clear
};

}  // namespace portalbd::nbd
