// NBD server: listens on TCP and/or a unix socket and serves the exports of an
// ExportProvider to any NBD client (nbd-client, qemu, nbdcopy, libnbd).
//
// Protocol coverage: fixed newstyle handshake (EXPORT_NAME, GO, INFO, LIST,
// ABORT, STRUCTURED_REPLY, LIST/SET_META_CONTEXT with base:allocation);
// READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (NO_HOLE, FAST_ZERO), CACHE,
// BLOCK_STATUS, DISC; simple and structured replies. TLS by NBD_OPT_STARTTLS
// (X.509 and PSK, off/on/require: nbd/tls.h).
//
// Layout of nbd/: server.cc (lifecycle) -> listener.cc (sockets) ->
// connection.cc (one client: handshake, request loop, worker pool) ->
// handshake.cc (options) / request.cc (validation) / dispatch.cc (device
// calls, replies) / errors.cc (Status -> NBD errno) / reply.cc (wire writes).
//
// Threads: one accept thread per listener; per connection one reader thread
// plus `workers_per_connection` workers that execute requests in parallel and
// answer them out of order. The reader executes writes, trims and zeroes
// without FUA itself (they only fill the engine's write buffer); reads,
// flushes and FUA requests go to the workers.
//
// Resource bounds against any client (issue 18): at most max_connections
// connections; WRITE payload memory across all of them within
// max_write_payload_bytes (+ one request), each buffer grown as its bytes
// arrive; per connection, max_inflight_bytes/max_inflight_requests queued.
//
// Ownership: the Server borrows `exports`, which must outlive it.
// Thread-safety: start() and stop() from one controlling thread; stats(),
// clients() and tcp_address() from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nbd/export_provider.h"
#include "nbd/tls.h"
#include "src/util/latency_histogram.h"
#include "src/util/status.h"

namespace portalbd::nbd {

class TraceRecorder;  // nbd/trace.h

struct ServerOptions {
  std::string tcp_address = "127.0.0.1:10809";  // "host:port"; empty = no TCP listener; port 0 = pick one
  std::string unix_path;                        // empty = no unix listener
  // Largest READ/WRITE payload accepted, advertised as the maximum payload in
  // NBD_INFO_BLOCK_SIZE; a longer READ/WRITE is answered EINVAL. 64 MiB is
  // libnbd's own request limit and twice the size the spec says every server
  // should take (2^25), so no common client meets it; TRIM and WRITE_ZEROES
  // carry no payload and are not limited. The memory bounds do not move with
  // it: a WRITE's buffer grows only as its bytes arrive (PayloadBudget).
  uint32_t max_request_bytes = 64 * 1024 * 1024;
  // Requests of one connection executed at the same time, at most: worker
  // threads start as requests queue up. Sized for reads that wait on a
  // remote store (a queue depth of 32 cold reads is 32 GETs at once).
  uint32_t workers_per_connection = 32;
  // Back-pressure: a connection stops reading new requests while its
  // in-flight READ/WRITE bytes reach this (one request may overshoot it) or
  // while max_inflight_requests are queued.
  uint64_t max_inflight_bytes = 64 * 1024 * 1024;
  uint32_t max_inflight_requests = 256;
  // WRITE payload bytes held in memory across all connections at once
  // (nbd/payload_budget.h): a reader takes in a client's data only as it
  // arrives and only within this, else it waits. One request may pass it by
  // at most max_request_bytes.
  uint64_t max_write_payload_bytes = 256ull * 1024 * 1024;
  // Most connections at once, TCP and unix together. One more is closed
  // before the greeting, with a log line (rate-limited to one a second).
  uint32_t max_connections = 128;
  // A client must finish negotiating within this, or it is dropped: an idle
  // half-open connection would otherwise hold a thread forever.
  uint32_t handshake_timeout_ms = 60 * 1000;
  // TLS (STARTTLS); the credentials are loaded by start(), which fails when
  // they cannot be.
  TlsOptions tls;
  // When set, every request answered in transmission is recorded here
  // (nbd/trace.h). The caller closes it after stop().
  std::shared_ptr<TraceRecorder> trace;
};

// The commands whose latency the server keeps, in ServerStats::latency order:
// the label values of portalbd_nbd_request_duration_seconds.
inline constexpr std::array<const char*, 7> kTimedCommands = {"read",         "write",        "flush", "trim",
                                                              "write_zeroes", "block_status", "cache"};

struct ServerStats {
  uint64_t connections_total = 0, connections_active = 0, reads = 0, writes = 0, flushes = 0, trims = 0, zeroes = 0,
           block_status = 0, cache = 0, bytes_read = 0, bytes_written = 0, errors = 0;
  uint64_t connections_refused = 0;              // closed at accept: max_connections reached
  uint64_t payload_waits = 0;                    // times a reader waited for the WRITE payload budget
  uint64_t payload_bytes_held = 0;               // WRITE payload buffers held now, all connections
  uint64_t bytes_trimmed = 0, bytes_zeroed = 0;  // lengths of TRIM and WRITE_ZEROES answered OK
  uint64_t in_flight = 0;                        // requests being executed now (dispatch to reply), all connections
  // Per kTimedCommands entry: time from dispatch to the reply written, of
  // every request executed, failed ones included.
  std::array<HistogramSnapshot, kTimedCommands.size()> latency{};
};

struct ClientInfo {
  std::string peer;         // "127.0.0.1:41234", or "unix:pid=123" for unix sockets
  std::string export_name;  // empty while the client is still negotiating
  std::string tls;          // "" in the clear, else its TLS identity ("psk:alice", "x509:CN=...")
  int64_t connected_unix_ms = 0;
};

class Server {
 public:
  Server(ExportProvider& exports, ServerOptions options);
  ~Server();  // calls stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens, then starts the accept threads. The error names the
  // address, e.g. "bind 127.0.0.1:10809: Address already in use".
  // REQUIRES: called at most once.
  Status start();
  // The bound TCP address, "127.0.0.1:34567" (port 0 resolved); empty when
  // there is no TCP listener.
  std::string tcp_address() const;
  // Stops accepting, lets every connection finish and answer its in-flight
  // requests, closes them and joins every thread. Idempotent.
  void stop();

  ServerStats stats() const;
  std::vector<ClientInfo> clients() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portalbd::nbd
