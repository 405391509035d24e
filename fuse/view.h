// The FUSE view's entry points: mount every snapshot of a portalbd volume as
// a read-only image file (and, opt-in, the live volume read-write), serve
// until unmounted, and unmount. `portalctl mount` / `portalctl umount` call
// these; so can tests or another program.
//
// The view is a plain NBD client of the daemon (see DESIGN.md): it needs only
// the NBD endpoint, so it also works against a daemon on another host.
//
// Thread-safety: run_view() blocks the calling thread until unmount and runs
// the FUSE worker threads itself; call it once per process (it installs
// signal handlers and may fork into the background).
#pragma once

#include <chrono>
#include <string>

#include "fuse/nbd_endpoint.h"
#include "src/util/status.h"

namespace portalbd::fuse {

struct ViewOptions {
  std::string mountpoint;
  NbdEndpoint endpoint;
  std::string export_name;  // the live export; "" = the one the server lists
  bool live = false;        // also show live.img, read-write
  bool foreground = false;  // false: fork into the background once mounted
  int connections = 8;      // NBD connections per open image (bench/fuse_read.sh: 4 -> 0.56x, 8 -> 0.85x of nbdcopy)
  std::chrono::milliseconds io_timeout{30000};  // a request fails with EIO after this
  std::chrono::milliseconds list_ttl{1000};     // how long a snapshot listing is reused
  bool debug = false;                           // libfuse request trace (foreground only)
};

// Checks the mountpoint, reaches the server, mounts, then serves until the
// view is unmounted or the process gets SIGINT/SIGTERM/SIGHUP. In the
// background mode the calling process exits with status 0 once the mount is
// ready, and the child keeps serving. Errors (all before mounting) carry a
// one-line message: NotFound / InvalidArgument / Busy for the mountpoint,
// Unavailable for permission or an unreachable server.
Status run_view(const ViewOptions& options);

}  // namespace portalbd::fuse
