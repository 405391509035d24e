// portalctl's exit status, the contract with shell scripts and cron jobs
// (listed in `portalctl --help`):
//   0 ok, 1 operation failed, 2 usage error, 3 daemon not reachable,
//   4 no such snapshot (NotFound), 5 already exists (AlreadyExists).
//
// Thread-safety: pure functions.
#pragma once

#include "ctl/control_client.h"
#include "src/util/status.h"

namespace portalbd::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
inline constexpr int kExitNotFound = 4;
inline constexpr int kExitAlreadyExists = 5;

// The exit status for a failed call(). A daemon's InvalidArgument (bad name,
// bad option) counts as a usage error.
int exit_code_for(const Status& status, CallFailure failure);

// The --help footer that lists the codes above.
const char* exit_codes_help();

}  // namespace portalbd::ctl
