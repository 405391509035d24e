#include "daemon/fuse_mount.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>

#include "fuse/view.h"
#include "src/log/log.h"
#include "src/util/thread_name.h"

namespace portalbd {
namespace {

// True once /proc/self/mountinfo lists a FUSE mount at `path`.
bool is_mounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" " + path + " ") != std::string::npos && line.find("fuse") != std::string::npos) return true;
  }
  return false;
}

}  // namespace

Status FuseMount::start() {
  fuse::ViewOptions options;
  options.mountpoint = mountpoint_;
  options.export_name = export_name_;
  options.foreground = true;  // never fork inside the daemon
  if (!nbd_unix_.empty()) {
    options.endpoint = fuse::NbdEndpoint::unix_socket(nbd_unix_);
  } else {
    auto tcp = fuse::NbdEndpoint::parse_tcp(nbd_tcp_);
    if (!tcp.ok()) return tcp.status();
    options.endpoint = *tcp;
  }
  options.endpoint.tls = tls_;
  thread_ = std::thread([this, options] {
    name_this_thread("fuse-view");
    result_ = fuse::run_view(options);
    finished_ = true;
  });
  for (int i = 0; i < 200; ++i) {  // up to 10 s
    if (is_mounted(mountpoint_)) {
      log::get("fuse")->info("snapshot view mounted mountpoint={}", mountpoint_);
      return Status::OK();
    }
    if (finished_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (thread_.joinable() && finished_) thread_.join();
  if (finished_ && !result_.ok()) return result_.With("mount the snapshot view at " + mountpoint_);
  return Status::IOError("the snapshot view did not appear at " + mountpoint_);
}

void FuseMount::stop() {
  if (!thread_.joinable()) return;
  if (!finished_) ::umount2(mountpoint_.c_str(), MNT_DETACH);
  thread_.join();
  log::get("fuse")->info("snapshot view unmounted mountpoint={}", mountpoint_);
}

}  // namespace portalbd
