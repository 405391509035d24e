// Small helpers for AF_UNIX stream sockets shared by the control server and
// client: address construction with a length check, and connect.
//
// Thread-safety: pure functions over their arguments.
#pragma once

#include <sys/un.h>

#include <string>

#include "src/util/fd.h"
#include "src/util/status.h"

namespace portalbd::ctl {

// Fills *addr for `path`. InvalidArgument when the path does not fit
// sun_path (107 bytes plus NUL).
Status make_unix_address(const std::string& path, sockaddr_un* addr);

// Connects a new close-on-exec stream socket to `path`. On failure returns an
// invalid fd and sets *error to the errno (ENOENT: no socket file,
// ECONNREFUSED: nobody listening, ENAMETOOLONG: path too long).
UniqueFd connect_unix(const std::string& path, int* error);

}  // namespace portalbd::ctl
