#include "nbd/request.h"

#include "nbd/protocol.h"
#include "nbd/wire.h"

namespace portalbd::nbd {
namespace {

// Command flags each command may carry. FUA is valid on every command once
// SEND_FUA is advertised (the spec makes servers accept it even where it
// means nothing), which is on writable exports only (transmission_flags_for);
// DF depends on structured replies.
uint16_t allowed_flags(uint16_t type, const Session& session) {
  using namespace proto;
  const uint16_t fua = session.device->read_only() ? 0 : kCmdFlagFua;
  switch (type) {
    case kCmdRead: return fua | (session.structured_replies ? kCmdFlagDf : 0);
    case kCmdWriteZeroes: return fua | kCmdFlagNoHole | kCmdFlagFastZero;
    case kCmdBlockStatus: return fua | kCmdFlagReqOne;
    default: return fua;
  }
}

bool known_command(uint16_t type) {
  using namespace proto;
  switch (type) {
    case kCmdRead:
    case kCmdWrite:
    case kCmdDisc:
    case kCmdFlush:
    case kCmdTrim:
    case kCmdCache:
    case kCmdWriteZeroes:
    case kCmdBlockStatus: return true;
  }
  return false;
}

}  // namespace

bool parse_request(std::span<const std::byte, 28> header, Request* out) {
  const std::byte* p = header.data();
  if (load_be32(p) != proto::kRequestMagic) return false;
  out->flags = load_be16(p + 4);
  out->type = load_be16(p + 6);
  out->cookie = load_be64(p + 8);
  out->offset = load_be64(p + 16);
  out->length = load_be32(p + 24);
  return true;
}

uint32_t validate_request(const Request& r, const Session& session) {
  using namespace proto;
  if (!known_command(r.type)) return kEinval;
  if (r.flags & ~allowed_flags(r.type, session)) return kEinval;
  if (r.type == kCmdDisc) return 0;
  if (r.type == kCmdFlush) return (r.offset == 0 && r.length == 0) ? 0 : kEinval;

  const bool writes = r.type == kCmdWrite || r.type == kCmdTrim || r.type == kCmdWriteZeroes;
  if (writes && session.device->read_only()) return kEperm;
  if (r.type == kCmdBlockStatus && !session.base_allocation) return kEinval;
  if (r.length == 0) return kEinval;
  if ((r.type == kCmdRead || r.type == kCmdWrite) && r.length > session.max_request_bytes) return kEinval;

  // Written as a subtraction so a huge offset cannot wrap around.
  const bool in_range = r.offset <= session.size_bytes && r.length <= session.size_bytes - r.offset;
  if (!in_range) return (r.type == kCmdWrite || r.type == kCmdWriteZeroes) ? kEnospc : kEinval;
  return 0;
}

const char* command_name(uint16_t type) {
  switch (type) {
    case proto::kCmdRead: return "READ";
    case proto::kCmdWrite: return "WRITE";
    case proto::kCmdDisc: return "DISC";
    case proto::kCmdFlush: return "FLUSH";
    case proto::kCmdTrim: return "TRIM";
    case proto::kCmdCache: return "CACHE";
    case proto::kCmdWriteZeroes: return "WRITE_ZEROES";
    case proto::kCmdBlockStatus: return "BLOCK_STATUS";
  }
  return "UNKNOWN";
}

}  // namespace portalbd::nbd
