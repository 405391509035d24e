// The client end of the control socket: one request, one answer.
// Used by portalctl; usable by tests and other tools.
//
// Thread-safety: call() opens its own connection; call it from any thread.
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>

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

// Called with each progress line's object ({"elapsed_ms":N[,"message":"..."]}).
using ProgressCallback = std::function<void(const nlohmann::json& progress)>;

// Sends `cmd` with `args` (an object, or null for {}) to the daemon at
// `socket_path` and returns the "result" object. `timeout_ms` <= 0 waits
// forever. Without `on_progress`, `timeout_ms` bounds the whole call. With
// it, the daemon is asked for progress lines (it sends one at least every
// second while the command runs) and `timeout_ms` bounds the silence between
// two lines: a command may take as long as it needs while the daemon is
// alive. Errors:
//   Unavailable "cannot reach portalbd at PATH: <strerror> (is the daemon running?)"
//   Unavailable "portalbd at PATH did not answer 'cmd' within N ms"
//   Unavailable "portalbd at PATH sent nothing about 'cmd' for N ms" (with on_progress)
//   otherwise the daemon's own code and message (kDaemon), including Busy
//   "portalbd is busy: ..." from a daemon at its connection limit, which
//   closes the connection right after, perhaps before our request is sent.
Result<nlohmann::json> call(const std::string& socket_path, const std::string& cmd, const nlohmann::json& args,
                            int timeout_ms, CallFailure* failure = nullptr,
                            const ProgressCallback& on_progress = nullptr);

}  // namespace portalbd::ctl
