// The client end of the control socket: one request, one answer.
// Used by portalctl; usable by tests and other tools.
//
// Thread-safety: call() opens its own connection; call it from any thread.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "src/util/status.h"

namespace portalbd::ctl {

// Where a failed call() failed, so that callers can tell "no daemon" from
// "the daemon said no" (portalctl maps them to different exit codes).
enum class CallFailure {
  kNone,         // the call succeeded
  kUnreachable,  // no socket, nobody listening, no permission: Unavailable
  kTimeout,      // connected, but no answer within the timeout: Unavailable
  kProtocol,     // the answer was not a valid response: Corruption / IOError
  kDaemon,       // the daemon answered with an error: its code and message
};

// Sends `cmd` with `args` (an object, or null for {}) to the daemon at
// `socket_path` and returns the "result" object. `timeout_ms` <= 0 waits
// forever. Errors:
//   Unavailable "cannot reach portalbd at PATH: <strerror> (is the daemon running?)"
//   Unavailable "portalbd at PATH did not answer 'cmd' within N ms"
//   otherwise the daemon's own code and message (kDaemon), including Busy
//   "portalbd is busy: ..." from a daemon at its connection limit, which
//   closes the connection right after, perhaps before our request is sent.
Result<nlohmann::json> call(const std::string& socket_path, const std::string& cmd, const nlohmann::json& args,
                            int timeout_ms, CallFailure* failure = nullptr);

}  // namespace portalbd::ctl
