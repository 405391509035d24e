#include "nbd/dispatch.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "nbd/errors.h"
#include "nbd/protocol.h"
#include "nbd/trace.h"
#include "nbd/wire.h"
#include "src/log/log.h"

namespace portalbd::nbd {
namespace {

// Extents asked of the engine per BLOCK_STATUS (the spec lets a server answer
// part of the range; the client asks again for the rest).
constexpr size_t kMaxStatusExtents = 1024;

void take_note(const DispatchContext& ctx, uint32_t error) {
  if (ctx.note == nullptr) return;
  ctx.note->error = error;
  ctx.note->sent_us = ctx.note->clock->now_us();
}

// Held replies copy their data; past this much a reply goes out on its own.
constexpr size_t kMaxHeldDataBytes = 64 << 10;

// Every reply of this file goes through these two, so the note is never missed.
bool send_simple(const DispatchContext& ctx, uint64_t cookie, uint32_t error, std::span<const std::byte> data = {}) {
  take_note(ctx, error);
  if (ctx.hold_replies && data.size() <= kMaxHeldDataBytes) return ctx.out.simple_held(cookie, error, data);
  return ctx.out.simple(cookie, error, data);
}

bool send_structured(const DispatchContext& ctx, uint64_t cookie, const std::vector<Chunk>& chunks) {
  uint32_t error = 0;
  size_t data_bytes = 0;
  for (const Chunk& c : chunks) {
    bool is_error = c.type == proto::kReplyTypeError || c.type == proto::kReplyTypeErrorOffset;
    if (is_error && c.fields.size() >= 4) error = load_be32(c.fields.data());
    data_bytes += c.data.size();
  }
  take_note(ctx, error);
  if (ctx.hold_replies && data_bytes <= kMaxHeldDataBytes) return ctx.out.structured_held(cookie, chunks);
  return ctx.out.structured(cookie, chunks);
}

uint32_t base_allocation_flags(ExtentState state) {
  switch (state) {
    case ExtentState::kData: return 0;
    case ExtentState::kZero: return proto::kStateZero;
    case ExtentState::kHole: return proto::kStateHole | proto::kStateZero;
  }
  return 0;
}

// Room for a READ's bytes, not zero-filled: the device writes every byte.
struct ReadBuffer {
  explicit ReadBuffer(uint32_t length) : owner(new std::byte[length]), bytes(owner.get(), length) {}
  std::unique_ptr<std::byte[]> owner;
  std::span<std::byte> bytes;
};

// The reply to a READ whose bytes are in `buf` (when `st` is OK); `extents`
// describe them unless the client asked not to fragment (`df`).
bool reply_structured_read(const DispatchContext& ctx, const Request& r, const ReadBuffer& buf, const Status& st,
                           const std::vector<StatusExtent>& extents, bool df) {
  std::vector<Chunk> chunks;
  if (!st.ok()) {
    StatsCounters::add(ctx.stats.errors);
    chunks.push_back(ReplyWriter::error_offset_chunk(nbd_error_for(st), st.ToString(), r.offset));
  } else if (df || extents.empty()) {
    chunks.push_back(ReplyWriter::data_chunk(r.offset, buf.bytes));
  } else {
    uint64_t at = 0;  // into the request
    for (size_t i = 0; i < extents.size() && at < r.length;) {
      // One chunk per run of data, or of zeros (zeroed and trimmed alike).
      const bool data = extents[i].state == ExtentState::kData;
      uint64_t len = 0;
      for (; i < extents.size() && (extents[i].state == ExtentState::kData) == data; ++i) len += extents[i].length;
      len = std::min<uint64_t>(len, r.length - at);
      if (data) {
        chunks.push_back(ReplyWriter::data_chunk(r.offset + at, buf.bytes.subspan(at, len)));
      } else {
        chunks.push_back(ReplyWriter::hole_chunk(r.offset + at, static_cast<uint32_t>(len)));
      }
      at += len;
    }
    // Extents short of the request (never from the engine) leave data to send.
    if (at < r.length) chunks.push_back(ReplyWriter::data_chunk(r.offset + at, buf.bytes.subspan(at)));
  }
  if (st.ok()) StatsCounters::add(ctx.stats.bytes_read, r.length);
  return send_structured(ctx, r.cookie, chunks);
}

bool reply_simple_read(const DispatchContext& ctx, const Request& r, const ReadBuffer& buf, const Status& st) {
  if (!st.ok()) return reply_error(ctx, r, nbd_error_for(st), st.ToString());
  StatsCounters::add(ctx.stats.bytes_read, r.length);
  return send_simple(ctx, r.cookie, 0, buf.bytes);
}

bool structured_read(const DispatchContext& ctx, const Request& r) {
  ReadBuffer buf(r.length);
  // Don't-fragment: exactly one data chunk, zeros spelled out; otherwise zero
  // ranges go as hole chunks, from the extents the read itself found.
  const bool df = r.flags & proto::kCmdFlagDf;
  std::vector<StatusExtent> extents;
  const Status st = ctx.session.device->read_described(r.offset, buf.bytes, df ? nullptr : &extents);
  return reply_structured_read(ctx, r, buf, st, extents, df);
}

bool simple_read(const DispatchContext& ctx, const Request& r) {
  ReadBuffer buf(r.length);
  return reply_simple_read(ctx, r, buf, ctx.session.device->read(r.offset, buf.bytes));
}

bool block_status(const DispatchContext& ctx, const Request& r) {
  const bool req_one = r.flags & proto::kCmdFlagReqOne;
  std::vector<StatusExtent> extents;
  Status st = ctx.session.device->block_status(r.offset, r.length, req_one ? 1 : kMaxStatusExtents, &extents);
  if (!st.ok()) return reply_error(ctx, r, nbd_error_for(st), st.ToString());

  // Descriptors: clamp to the request, merge equal neighbours, never zero-length.
  std::vector<std::pair<uint32_t, uint32_t>> descriptors;  // (length, flags)
  uint64_t covered = 0;
  for (const StatusExtent& e : extents) {
    if (e.length == 0 || covered >= r.length) break;
    auto len = static_cast<uint32_t>(std::min<uint64_t>(e.length, r.length - covered));
    uint32_t flags = base_allocation_flags(e.state);
    if (!descriptors.empty() && descriptors.back().second == flags) {
      descriptors.back().first += len;
    } else {
      descriptors.emplace_back(len, flags);
    }
    covered += len;
  }
  // "Status 0" (allocated, contents unknown) is always a truthful answer.
  if (descriptors.empty()) descriptors.emplace_back(r.length, 0);
  if (req_one) descriptors.resize(1);

  WireWriter w;
  w.u32(proto::kBaseAllocationId);
  for (auto [len, flags] : descriptors) w.u32(len).u32(flags);
  std::vector<Chunk> chunks;
  chunks.push_back(Chunk{proto::kReplyTypeBlockStatus, std::move(w.data()), {}});
  return send_structured(ctx, r.cookie, chunks);
}

}  // namespace

bool reply_error(const DispatchContext& ctx, const Request& r, uint32_t error, const std::string& message) {
  StatsCounters::add(ctx.stats.errors);
  log::get("nbd")->debug("NBD request failed peer={} command={} offset={} length={} error={} reason={}", ctx.peer,
                         command_name(r.type), r.offset, r.length, nbd_error_name(error), log::quote(message));
  if (ctx.session.structured_replies) {
    return send_structured(ctx, r.cookie, {ReplyWriter::error_chunk(error, message)});
  }
  return send_simple(ctx, r.cookie, error);
}

namespace {

bool run_request(const DispatchContext& ctx, const Request& r, std::vector<std::byte> payload,
                 BlockDevice::FlushTicket flush_ticket) {
  BlockDevice& device = *ctx.session.device;
  const bool fua = r.flags & proto::kCmdFlagFua;
  Status st;
  switch (r.type) {
    case proto::kCmdRead:
      StatsCounters::add(ctx.stats.reads);
      return ctx.session.structured_replies ? structured_read(ctx, r) : simple_read(ctx, r);
    case proto::kCmdBlockStatus: StatsCounters::add(ctx.stats.block_status); return block_status(ctx, r);
    case proto::kCmdWrite:
      StatsCounters::add(ctx.stats.writes);
      st = device.write_owned(r.offset, std::move(payload), fua);
      if (st.ok()) StatsCounters::add(ctx.stats.bytes_written, r.length);
      break;
    case proto::kCmdFlush:
      StatsCounters::add(ctx.stats.flushes);
      st = device.flush_through(flush_ticket);
      break;
    case proto::kCmdTrim:
      StatsCounters::add(ctx.stats.trims);
      st = device.trim(r.offset, r.length, fua);
      if (st.ok()) StatsCounters::add(ctx.stats.bytes_trimmed, r.length);
      break;
    case proto::kCmdWriteZeroes:
      // NO_HOLE is satisfied: engine zeroes are allocated (kZero), not holes.
      // FAST_ZERO is satisfied: the engine zeroes by metadata, never by data.
      StatsCounters::add(ctx.stats.zeroes);
      st = device.write_zeroes(r.offset, r.length, fua);
      if (st.ok()) StatsCounters::add(ctx.stats.bytes_zeroed, r.length);
      break;
    case proto::kCmdCache:
      StatsCounters::add(ctx.stats.cache);
      st = device.prefetch(r.offset, r.length);
      break;
    default: st = Status::InvalidArgument("unexpected command"); break;
  }
  if (!st.ok()) return reply_error(ctx, r, nbd_error_for(st), st.ToString());
  return send_simple(ctx, r.cookie, 0);
}

}  // namespace

namespace {

void record_latency(const DispatchContext& ctx, const Request& r, std::chrono::steady_clock::time_point start) {
  if (const int slot = StatsCounters::timed_slot(r.type); slot >= 0) {
    ctx.stats.latency[static_cast<size_t>(slot)].record(std::chrono::steady_clock::now() - start);
  }
}

}  // namespace

// Times the request from here to its reply written (held replies: to when
// they were queued), and counts it in flight meanwhile.
bool execute_request(const DispatchContext& ctx, const Request& r, std::vector<std::byte> payload,
                     BlockDevice::FlushTicket flush_ticket) {
  const auto start = std::chrono::steady_clock::now();
  StatsCounters::add(ctx.stats.in_flight);
  const bool sent = run_request(ctx, r, std::move(payload), flush_ticket);
  ctx.stats.in_flight.fetch_sub(1, std::memory_order_relaxed);
  record_latency(ctx, r, start);
  return sent;
}

CachedRead execute_read_if_cached(const DispatchContext& ctx, const Request& r) {
  const auto start = std::chrono::steady_clock::now();
  ReadBuffer buf(r.length);
  const bool structured = ctx.session.structured_replies;
  const bool df = r.flags & proto::kCmdFlagDf;
  std::vector<StatusExtent> extents;
  if (!ctx.session.device->read_if_cached(r.offset, buf.bytes, structured && !df ? &extents : nullptr)) {
    return CachedRead::kNotCached;
  }
  StatsCounters::add(ctx.stats.reads);
  const bool sent = structured ? reply_structured_read(ctx, r, buf, Status::OK(), extents, df)
                               : reply_simple_read(ctx, r, buf, Status::OK());
  record_latency(ctx, r, start);
  return sent ? CachedRead::kSent : CachedRead::kBroken;
}

}  // namespace portalbd::nbd
