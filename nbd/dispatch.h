// Dispatch: runs one validated request against the session's device and
// writes its reply (simple, or structured when negotiated).
//
// Every BlockDevice call made here satisfies its contract because
// validate_request() (nbd/request.h) admitted the request; device errors are
// turned into NBD errors by nbd_error_for() (nbd/errors.h) only.
//
// Thread-safety: callable from many worker threads at once; the device is
// thread-safe by contract and the ReplyWriter serialises the socket.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "nbd/reply.h"
#include "nbd/request.h"
#include "nbd/session.h"
#include "nbd/stats.h"

namespace portalbd::nbd {

class TraceRecorder;

// What the request trace needs about the reply just sent. Owned by one
// worker (or the reader), never shared between threads.
struct ReplyNote {
  const TraceRecorder* clock = nullptr;  // stamps sent_us
  uint32_t error = 0;                    // NBD error of the reply, 0 = success
  // Taken just before the reply is written, so a request the client sends
  // after reading this reply is always received later than this.
  uint64_t sent_us = 0;
};

struct DispatchContext {
  const Session& session;
  ReplyWriter& out;
  StatsCounters& stats;
  const std::string& peer;
  ReplyNote* note = nullptr;  // filled at every reply when set (tracing)
  // Replies carrying up to 64 KiB of data are held (ReplyWriter::simple_held,
  // structured_held) for the caller to flush: set only by the connection's
  // reader thread, for the requests it runs itself.
  bool hold_replies = false;
};

// Executes `request` (with its WRITE payload) and replies. Returns false when
// the reply could not be written (the connection is then beyond saving).
// A FLUSH makes durable what `flush_ticket` names: the device's ticket taken
// when the FLUSH was received (BlockDevice::flush_ticket).
// REQUIRES: validate_request(request, session) == 0, and not DISC.
bool execute_request(const DispatchContext& ctx, const Request& request, std::vector<std::byte> payload,
                     BlockDevice::FlushTicket flush_ticket = BlockDevice::kFlushEverything);

// How a READ offered to the device's cached reads went.
enum class CachedRead {
  kNotCached,  // the device would have to wait: nothing was sent or counted
  kSent,       // served and answered
  kBroken,     // served, but the reply could not be written
};
// Runs a READ only if the device serves it without waiting
// (BlockDevice::read_if_cached), and replies as execute_request() would.
// REQUIRES: validate_request(request, session) == 0, request.type == READ.
CachedRead execute_read_if_cached(const DispatchContext& ctx, const Request& request);

// Answers `request` with `error`, using a structured error chunk (with
// `message`) when structured replies were negotiated.
bool reply_error(const DispatchContext& ctx, const Request& request, uint32_t error, const std::string& message);

}  // namespace portalbd::nbd
