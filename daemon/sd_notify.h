// notify_service_manager(): tells systemd (Type=notify units) about the
// daemon's state through $NOTIFY_SOCKET — "READY=1" once every listener
// accepts connections, "STOPPING=1" when the final flush starts. A no-op when
// not started by systemd. Never fails the caller.
// Thread-safety: safe from any thread.
#pragma once

#include <string>

namespace portalbd {

void notify_service_manager(const std::string& message);

}  // namespace portalbd
