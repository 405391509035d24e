// Listening sockets for the NBD server: TCP ("host:port", IPv4 or "[v6]:port")
// and unix stream sockets, plus naming of accepted peers for logs.
//
// Ownership: returns owned descriptors (UniqueFd); the caller closes them.
// Thread-safety: free functions, no shared state.
#pragma once

#include <string>

#include "src/util/fd.h"
#include "src/util/status.h"

namespace portalbd::nbd {

// Binds and listens on `host_port`. On success `bound` receives the real
// address ("127.0.0.1:34567": port 0 resolved). Errors read like
// "bind 127.0.0.1:10809: Address already in use".
Result<UniqueFd> listen_tcp(const std::string& host_port, std::string* bound);

// Binds and listens on a unix socket at `path`. A stale socket file (nobody
// accepting on it) is replaced; a live one is an error, so two daemons never
// steal each other's socket.
Result<UniqueFd> listen_unix(const std::string& path);

// "127.0.0.1:41234", "[::1]:41234", or "unix:pid=123" for an accepted socket.
std::string peer_name(int fd);

// Disables Nagle on TCP sockets (replies are small and latency-bound);
// a no-op for unix sockets.
void tune_accepted_socket(int fd);

}  // namespace portalbd::nbd
