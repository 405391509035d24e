#include "nbd/errors.h"

#include "nbd/protocol.h"

namespace portalbd::nbd {

uint32_t nbd_error_for(const Status& status) {
  using Code = Status::Code;
  switch (status.code()) {
    case Code::kOk: return 0;
    case Code::kInvalidArgument:
    case Code::kOutOfRange: return proto::kEinval;
    case Code::kNoSpace: return proto::kEnospc;
    case Code::kReadOnly: return proto::kEperm;
    case Code::kNotSupported: return proto::kEnotsup;
    case Code::kCancelled: return proto::kEshutdown;
    // Storage trouble of any kind: the client can only retry or give up, and
    // EIO is what a disk would say.
    case Code::kNotFound:
    case Code::kAlreadyExists:
    case Code::kCorruption:
    case Code::kIOError:
    case Code::kUnavailable:
    case Code::kFenced:
    case Code::kBusy: return proto::kEio;
  }
  return proto::kEio;
}

const char* nbd_error_name(uint32_t error) {
  switch (error) {
    case 0: return "OK";
    case proto::kEperm: return "EPERM";
    case proto::kEio: return "EIO";
    case proto::kEnomem: return "ENOMEM";
    case proto::kEinval: return "EINVAL";
    case proto::kEnospc: return "ENOSPC";
    case proto::kEoverflow: return "EOVERFLOW";
    case proto::kEnotsup: return "ENOTSUP";
    case proto::kEshutdown: return "ESHUTDOWN";
  }
  return "E?";
}

}  // namespace portalbd::nbd
