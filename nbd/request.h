// Request: one transmission-phase request header, and the rules that decide
// whether it may reach the device.
//
// validate_request() is the single gate between the wire and BlockDevice: it
// enforces the BlockDevice contract (range inside the device, length > 0) and
// the protocol's error rules, so dispatch code may assume a sane request.
//
//   unknown command or flag bit, flag not valid for the command -> EINVAL
//   FUA on a read-only export (SEND_FUA is not advertised there)  -> EINVAL
//   write/trim/zeroes on a read-only export                      -> EPERM
//   length 0 (all but FLUSH/DISC); FLUSH with offset/length      -> EINVAL
//   READ/WRITE longer than max_request_bytes                     -> EINVAL
//   WRITE/WRITE_ZEROES past the end (or offset+length overflow)  -> ENOSPC
//   READ/TRIM/CACHE/BLOCK_STATUS past the end                    -> EINVAL
//   BLOCK_STATUS without a selected metadata context             -> EINVAL
//
// Thread-safety: pure functions over values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "nbd/protocol.h"
#include "nbd/session.h"

namespace portalbd::nbd {

struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Decodes a 28-byte header. False when the magic is wrong: the stream is out
// of sync and the connection must close.
bool parse_request(std::span<const std::byte, 28> header, Request* out);

// 0 when the request may be executed, else the NBD error to answer with.
uint32_t validate_request(const Request& request, const Session& session);

// True when the request carries `length` bytes of payload after its header
// (only WRITE), which must be consumed even when the request is refused.
inline bool has_payload(const Request& request) { return request.type == proto::kCmdWrite; }

const char* command_name(uint16_t type);

}  // namespace portalbd::nbd
