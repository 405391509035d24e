#include "nbd/handshake.h"

#include <array>
#include <bit>
#include <vector>

#include "nbd/protocol.h"
#include "nbd/socket_io.h"
#include "nbd/wire.h"
#include "src/log/log.h"

namespace portalbd::nbd {
namespace {

// NBD_INFO_BLOCK_SIZE wants a power of two, at least 512, and no larger than
// the maximum we advertise; the engine's hint is coerced into that shape.
uint32_t preferred_block_size(uint32_t engine_hint, uint32_t maximum) {
  uint32_t p = engine_hint;
  if (p == 0 || !std::has_single_bit(p)) p = 4096;
  p = std::max<uint32_t>(p, 512);
  if (p > maximum && maximum >= 512) p = std::bit_floor(maximum);
  return p;
}

const char* option_name(uint32_t option) {
  switch (option) {
    case proto::kOptExportName: return "EXPORT_NAME";
    case proto::kOptAbort: return "ABORT";
    case proto::kOptList: return "LIST";
    case proto::kOptStartTls: return "STARTTLS";
    case proto::kOptInfo: return "INFO";
    case proto::kOptGo: return "GO";
    case proto::kOptStructuredReply: return "STRUCTURED_REPLY";
    case proto::kOptListMetaContext: return "LIST_META_CONTEXT";
    case proto::kOptSetMetaContext: return "SET_META_CONTEXT";
    case proto::kOptExtendedHeaders: return "EXTENDED_HEADERS";
  }
  return "unknown";
}

}  // namespace

uint16_t transmission_flags_for(const BlockDevice& device, bool structured_replies) {
  uint16_t flags = proto::kFlagHasFlags | proto::kFlagSendFlush | proto::kFlagSendCache |
                   // The engine's flush covers writes from every connection.
                   proto::kFlagCanMultiConn;
  if (device.read_only()) {
    // Nothing can be written: offering TRIM, WRITE_ZEROES or FUA would only
    // invite requests that must fail (clients such as nbdinfo show them as
    // can_trim/can_zero/can_fua). FLUSH stays: it is harmless and some
    // clients send it unconditionally.
    flags |= proto::kFlagReadOnly;
  } else {
    flags |= proto::kFlagSendFua | proto::kFlagSendTrim | proto::kFlagSendWriteZeroes | proto::kFlagSendFastZero;
  }
  // DF only means something for structured reads; the spec forbids it otherwise.
  if (structured_replies) flags |= proto::kFlagSendDf;
  return flags;
}

std::optional<Session> Handshake::run() {
  auto logger = log::get("nbd");
  if (!send_greeting() || !read_client_flags()) return std::nullopt;

  for (;;) {
    std::array<std::byte, 16> header;
    if (read_exact(*transport_, header) != ReadResult::kOk) {
      logger->info("NBD client left during handshake peer={}", peer_);
      return std::nullopt;
    }
    uint64_t magic = load_be64(header.data());
    uint32_t option = load_be32(header.data() + 8);
    uint32_t length = load_be32(header.data() + 12);
    if (magic != proto::kOptionMagic) {
      logger->warn("NBD protocol error: bad option magic peer={} magic={:#x}", peer_, magic);
      return std::nullopt;
    }
    if (length > kMaxOptionBytes) {
      // We cannot skip gigabytes of option data cheaply, and no real client
      // sends them: say why, then hang up (the spec allows it against DoS).
      logger->warn("NBD protocol error: option too large peer={} option={} length={}", peer_, option, length);
      (void)error(option, proto::kRepErrTooBig, "option data too large");
      return std::nullopt;
    }
    std::vector<std::byte> payload(length);
    if (read_exact(*transport_, payload) != ReadResult::kOk) {
      logger->warn("NBD protocol error: truncated option peer={} option={}", peer_, option);
      return std::nullopt;
    }
    switch (handle_option(option, payload)) {
      case Next::kContinue: break;
      case Next::kTransmission: return std::move(session_);
      case Next::kClose: return std::nullopt;
    }
  }
}

bool Handshake::send_greeting() {
  WireWriter w;
  w.u64(proto::kNbdMagic).u64(proto::kOptionMagic).u16(proto::kFlagFixedNewstyle | proto::kFlagNoZeroes);
  return transport_->send_all(w.data()).ok();
}

bool Handshake::read_client_flags() {
  std::array<std::byte, 4> buf;
  if (read_exact(*transport_, buf) != ReadResult::kOk) return false;
  uint32_t flags = load_be32(buf.data());
  if (flags & ~proto::kKnownClientFlags) {
    log::get("nbd")->warn("NBD protocol error: unknown client flags peer={} flags={:#x}", peer_, flags);
    return false;
  }
  no_zeroes_ = flags & proto::kClientFlagNoZeroes;
  return true;
}

Handshake::Next Handshake::handle_option(uint32_t option, std::span<const std::byte> payload) {
  if (tls_ != nullptr && tls_->mode() == TlsMode::kRequire && tls_identity_.empty() && option != proto::kOptStartTls &&
      option != proto::kOptAbort) {
    if (option == proto::kOptExportName) {
      // EXPORT_NAME has no error reply: the spec says hang up.
      log::get("nbd")->warn("NBD export refused peer={} reason={}", peer_,
                            log::quote("EXPORT_NAME without TLS; the server requires TLS"));
      return Next::kClose;
    }
    return error(option, proto::kRepErrTlsReqd, "this server requires TLS: send NBD_OPT_STARTTLS first");
  }
  switch (option) {
    case proto::kOptExportName: return export_name(payload);
    case proto::kOptAbort: (void)reply(option, proto::kRepAck); return Next::kClose;
    case proto::kOptList: return list(option, payload);
    case proto::kOptStartTls: return starttls(option, payload);
    case proto::kOptInfo:
    case proto::kOptGo: return info_or_go(option, payload);
    case proto::kOptStructuredReply: return structured_reply(option, payload);
    case proto::kOptListMetaContext:
    case proto::kOptSetMetaContext: return meta_context(option, payload);
    default:
      log::get("nbd")->debug("NBD option unsupported peer={} option={} ({})", peer_, option, option_name(option));
      return error(option, proto::kRepErrUnsup, "option not supported");
  }
}

Handshake::Next Handshake::export_name(std::span<const std::byte> payload) {
  auto logger = log::get("nbd");
  if (payload.size() > proto::kMaxStringBytes) {
    logger->warn("NBD protocol error: export name too long peer={} length={}", peer_, payload.size());
    return Next::kClose;
  }
  std::string requested(reinterpret_cast<const char*>(payload.data()), payload.size());
  std::string name;
  auto device = open(requested, &name);
  if (!device.ok()) {
    // EXPORT_NAME has no error reply: the spec says hang up.
    logger->warn("NBD export refused peer={} export={} error={}", peer_, log::quote(requested),
                 device.status().ToString());
    return Next::kClose;
  }
  session_ = make_session(std::move(name), std::move(*device));
  WireWriter w;
  w.u64(session_->size_bytes).u16(session_->transmission_flags);
  if (!no_zeroes_) w.zeroes(124);
  if (!transport_->send_all(w.data()).ok()) return Next::kClose;
  return Next::kTransmission;
}

Handshake::Next Handshake::info_or_go(uint32_t option, std::span<const std::byte> payload) {
  // Payload: u32 name length, name, u16 count, count x u16 info type.
  WireReader r(payload);
  uint32_t name_len = 0;
  std::string requested;
  uint16_t count = 0;
  if (!r.u32(&name_len) || name_len > proto::kMaxStringBytes || !r.string(name_len, &requested) || !r.u16(&count) ||
      r.remaining() != size_t{count} * 2) {
    return error(option, proto::kRepErrInvalid, "malformed INFO/GO request");
  }
  bool want_name = false, want_description = false;
  for (uint16_t i = 0; i < count; ++i) {
    uint16_t type = 0;
    (void)r.u16(&type);
    want_name |= type == proto::kInfoName;
    want_description |= type == proto::kInfoDescription;
  }

  std::string name;
  auto device = open(requested, &name);
  if (!device.ok()) {
    return error(option, proto::kRepErrUnknown,
                 "export " + log::quote(requested) + " not available: " + device.status().message());
  }
  Session session = make_session(name, std::move(*device));

  auto send_info = [&](const WireWriter& w) { return reply(option, proto::kRepInfo, w.data()); };
  WireWriter info_export;
  info_export.u16(proto::kInfoExport).u64(session.size_bytes).u16(session.transmission_flags);
  WireWriter info_block;
  info_block.u16(proto::kInfoBlockSize)
      .u32(1)
      .u32(preferred_block_size(session.device->preferred_block_size(), max_request_bytes_))
      .u32(max_request_bytes_);
  if (!send_info(info_export) || !send_info(info_block)) return Next::kClose;
  if (want_name) {
    WireWriter w;
    w.u16(proto::kInfoName).bytes(name);
    if (!send_info(w)) return Next::kClose;
  }
  if (want_description) {
    std::string description = exports_.describe_export(name);
    if (description.size() > proto::kMaxStringBytes) description.resize(proto::kMaxStringBytes);
    if (!description.empty()) {
      WireWriter w;
      w.u16(proto::kInfoDescription).bytes(description);
      if (!send_info(w)) return Next::kClose;
    }
  }
  if (!reply(option, proto::kRepAck)) return Next::kClose;
  if (option == proto::kOptInfo) return Next::kContinue;
  session_ = std::move(session);
  return Next::kTransmission;
}

Handshake::Next Handshake::list(uint32_t option, std::span<const std::byte> payload) {
  if (!payload.empty()) return error(option, proto::kRepErrInvalid, "LIST takes no data");
  for (const ExportInfo& e : exports_.list_exports()) {
    WireWriter w;
    w.u32(static_cast<uint32_t>(e.name.size())).bytes(e.name).bytes(e.description);
    if (!reply(option, proto::kRepServer, w.data())) return Next::kClose;
  }
  return reply(option, proto::kRepAck) ? Next::kContinue : Next::kClose;
}

Handshake::Next Handshake::structured_reply(uint32_t option, std::span<const std::byte> payload) {
  if (!payload.empty()) return error(option, proto::kRepErrInvalid, "STRUCTURED_REPLY takes no data");
  structured_replies_ = true;
  return reply(option, proto::kRepAck) ? Next::kContinue : Next::kClose;
}

Handshake::Next Handshake::meta_context(uint32_t option, std::span<const std::byte> payload) {
  const bool is_set = option == proto::kOptSetMetaContext;
  if (!structured_replies_) {
    return error(option, proto::kRepErrInvalid, "metadata contexts need structured replies first");
  }
  // Payload: u32 name length, name, u32 query count, count x (u32 length, query).
  WireReader r(payload);
  uint32_t name_len = 0, count = 0;
  std::string export_name;
  if (!r.u32(&name_len) || name_len > proto::kMaxStringBytes || !r.string(name_len, &export_name) || !r.u32(&count)) {
    return error(option, proto::kRepErrInvalid, "malformed metadata context request");
  }
  bool match = false;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len = 0;
    std::string query;
    if (!r.u32(&len) || len > proto::kMaxStringBytes || !r.string(len, &query)) {
      return error(option, proto::kRepErrInvalid, "malformed metadata context query");
    }
    // "base:" lists every context of the namespace; SET wants exact names.
    match |= query == proto::kBaseAllocation || (!is_set && query == "base:");
  }
  if (r.remaining() != 0) return error(option, proto::kRepErrInvalid, "trailing bytes in metadata context request");
  // LIST with no query means "everything you have".
  if (!is_set && count == 0) match = true;

  if (is_set) {
    base_allocation_ = match;
    meta_export_ = export_name.empty() ? exports_.default_export() : export_name;
  }
  if (match) {
    WireWriter w;
    // LIST ids are reserved (0); SET ids name the context in BLOCK_STATUS replies.
    w.u32(is_set ? proto::kBaseAllocationId : 0).bytes(proto::kBaseAllocation);
    if (!reply(option, proto::kRepMetaContext, w.data())) return Next::kClose;
  }
  return reply(option, proto::kRepAck) ? Next::kContinue : Next::kClose;
}

Handshake::Next Handshake::starttls(uint32_t option, std::span<const std::byte> payload) {
  // Without TLS configured ('NOTLS' mode): POLICY, never TLS_REQD.
  if (tls_ == nullptr) return error(option, proto::kRepErrPolicy, "TLS is not offered by this server");
  if (!tls_identity_.empty()) return error(option, proto::kRepErrInvalid, "TLS is already negotiated");
  if (!payload.empty()) return error(option, proto::kRepErrInvalid, "STARTTLS takes no data");
  if (!reply(option, proto::kRepAck)) return Next::kClose;
  // The client starts its TLS handshake as soon as it reads the ACK; nothing
  // after the STARTTLS option has been read from the socket.
  auto tls = tls_->accept(fd_, timeout_ms_);
  auto logger = log::get("nbd");
  if (!tls.ok()) {
    logger->warn("NBD TLS handshake failed peer={} reason={}", peer_, log::quote(tls.status().message()));
    return Next::kClose;
  }
  // The rest of the negotiation is under the same deadline per read as
  // before STARTTLS: an idle client inside TLS must not hold a thread.
  (*tls)->set_receive_timeout(timeout_ms_);
  tls_identity_ = (*tls)->identity();
  logger->info("NBD TLS established peer={} identity={} cipher={}", peer_, log::quote(tls_identity_),
               log::quote((*tls)->cipher()));
  transport_ = std::move(*tls);
  // Invariant 6: what was negotiated in the clear is forgotten.
  structured_replies_ = false;
  base_allocation_ = false;
  meta_export_.clear();
  return Next::kContinue;
}

Result<std::shared_ptr<BlockDevice>> Handshake::open(const std::string& requested, std::string* resolved) {
  *resolved = requested.empty() ? exports_.default_export() : requested;
  auto device = exports_.open_export(*resolved);
  if (device.ok() && *device == nullptr) return Status::NotFound("export provider returned no device");
  return device;
}

Session Handshake::make_session(std::string name, std::shared_ptr<BlockDevice> device) const {
  Session s;
  s.export_name = std::move(name);
  s.size_bytes = device->size_bytes();
  s.structured_replies = structured_replies_;
  s.base_allocation = structured_replies_ && base_allocation_ && meta_export_ == s.export_name;
  s.transmission_flags = transmission_flags_for(*device, structured_replies_);
  s.max_request_bytes = max_request_bytes_;
  s.tls_identity = tls_identity_;
  s.device = std::move(device);
  return s;
}

bool Handshake::reply(uint32_t option, uint32_t type, std::span<const std::byte> payload) {
  WireWriter w;
  w.u64(proto::kOptionReplyMagic).u32(option).u32(type).u32(static_cast<uint32_t>(payload.size()));
  struct iovec iov[2] = {{w.data().data(), w.size()}, {const_cast<std::byte*>(payload.data()), payload.size()}};
  return transport_->send_all(iov).ok();
}

Handshake::Next Handshake::error(uint32_t option, uint32_t type, const std::string& message) {
  if (type != proto::kRepErrUnsup) {
    log::get("nbd")->warn("NBD option refused peer={} option={} reply={:#x} reason={}", peer_, option_name(option),
                          type, log::quote(message));
  }
  auto bytes = std::as_bytes(std::span(message.data(), message.size()));
  return reply(option, type, bytes) ? Next::kContinue : Next::kClose;
}

}  // namespace portalbd::nbd
