#include "ctl/exit_codes.h"

namespace portalbd::ctl {

int exit_code_for(const Status& status, CallFailure failure) {
  if (status.ok()) return kExitOk;
  switch (failure) {
    case CallFailure::kUnreachable: return kExitUnreachable;
    case CallFailure::kNone:  // not from call(): classify by code alone
    case CallFailure::kDaemon: break;
    case CallFailure::kTimeout:  // the daemon exists; the outcome is unknown
    case CallFailure::kProtocol: return kExitFailed;
  }
  switch (status.code()) {
    case Status::Code::kNotFound: return kExitNotFound;
    case Status::Code::kAlreadyExists: return kExitAlreadyExists;
    case Status::Code::kInvalidArgument: return kExitUsage;
    default: return kExitFailed;
  }
}

const char* exit_codes_help() {
  return "Exit status:\n"
         "  0  ok\n"
         "  1  the operation failed\n"
         "  2  usage error (bad command, option or name)\n"
         "  3  portalbd is not reachable on the control socket\n"
         "  4  no such snapshot\n"
         "  5  a snapshot with that name already exists";
}

}  // namespace portalbd::ctl
