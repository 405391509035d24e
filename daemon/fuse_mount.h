// FuseMount: the FUSE snapshot view mounted by the daemon itself, when the
// config names `[fuse] mountpoint`. It runs fuse::run_view in the foreground
// on its own thread, as an NBD client of this daemon's own listener, and is
// unmounted (MNT_DETACH) at stop, before the NBD server goes away.
// Thread-safety: start()/stop() from the daemon's main thread.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "fuse/nbd_endpoint.h"
#include "src/util/status.h"

namespace portalbd {

class FuseMount {
 public:
  // `tls`: how to reach the daemon's own listener when it runs TLS.
  FuseMount(std::string mountpoint, std::string nbd_unix, std::string nbd_tcp, std::string export_name,
            fuse::NbdTls tls = {})
      : mountpoint_(std::move(mountpoint)),
        nbd_unix_(std::move(nbd_unix)),
        nbd_tcp_(std::move(nbd_tcp)),
        export_name_(std::move(export_name)),
        tls_(std::move(tls)) {}
  ~FuseMount() { stop(); }

  // Mounts and returns once the mount is visible (or failed).
  Status start();
  void stop();

 private:
  const std::string mountpoint_, nbd_unix_, nbd_tcp_, export_name_;
  const fuse::NbdTls tls_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  Status result_;  // written by the thread before finished_
};

}  // namespace portalbd
