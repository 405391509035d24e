#include "fuse/view.h"

#include <cstring>
#include <memory>
#include <vector>

#include "fuse/fuse_api.h"
#include "fuse/mountpoint.h"
#include "fuse/snapshot_catalog.h"
#include "fuse/view_fs.h"

namespace portalbd::fuse {
namespace {

// RAII for the libfuse session and what hangs off it, torn down in reverse.
class Session {
 public:
  Session() = default;
  ~Session() {
    if (se_ == nullptr) return;
    if (signals_) fuse_remove_signal_handlers(se_);
    if (mounted_) fuse_session_unmount(se_);
    fuse_session_destroy(se_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Status create(const std::vector<std::string>& args, ViewFs* fs) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    se_ = fuse_session_new(&fargs, &ViewFs::ops(), sizeof(fuse_lowlevel_ops), fs);
    fuse_opt_free_args(&fargs);
    if (se_ == nullptr) return Status::InvalidArgument("cannot create the FUSE session (bad options?)");
    return Status::OK();
  }
  Status mount(const std::string& mountpoint) {
    if (fuse_set_signal_handlers(se_) != 0) return Status::IOError("cannot install signal handlers");
    signals_ = true;
    if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
      return Status::Unavailable("cannot mount the view on " + mountpoint +
                                 " (is /dev/fuse usable and fusermount3 installed?)");
    }
    mounted_ = true;
    return Status::OK();
  }
  fuse_session* get() { return se_; }

 private:
  fuse_session* se_ = nullptr;
  bool signals_ = false;
  bool mounted_ = false;
};

struct LoopConfigDeleter {
  void operator()(fuse_loop_config* c) const { fuse_loop_cfg_destroy(c); }
};

}  // namespace

Status run_view(const ViewOptions& options) {
  auto mountpoint = check_mountpoint(options.mountpoint);
  if (!mountpoint.ok()) return mountpoint.status();

  // A bounded first contact, so that a missing daemon is an error now rather
  // than an empty directory later.
  SnapshotCatalog catalog(options.endpoint, options.export_name, kFirstSnapshotIno, options.list_ttl,
                          std::min(options.io_timeout, std::chrono::milliseconds(10000)));
  if (Status st = catalog.prime(); !st.ok()) return st;

  ViewFsOptions fs_options;
  fs_options.endpoint = options.endpoint;
  fs_options.mountpoint = *mountpoint;
  fs_options.live = options.live;
  fs_options.connections = options.connections;
  fs_options.io_timeout = options.io_timeout;
  ViewFs fs(fs_options, &catalog);

  std::string mount_opts = "fsname=portalbd,subtype=portalbd,default_permissions";
  if (!options.live) mount_opts += ",ro";
  std::vector<std::string> args{"portalbd-view", "-o", mount_opts};
  if (options.debug) args.push_back("-d");

  Session session;
  PBD_RETURN_IF_ERROR(session.create(args, &fs));
  PBD_RETURN_IF_ERROR(session.mount(*mountpoint));
  // After the mount is ready (so the caller's next command sees it) and
  // before any thread exists (fork keeps only the calling thread).
  if (fuse_daemonize(options.foreground ? 1 : 0) != 0) return Status::IOError("cannot go into the background");

  std::unique_ptr<fuse_loop_config, LoopConfigDeleter> loop(fuse_loop_cfg_create());
  if (!loop) return Status::IOError("cannot configure the FUSE loop");
  // Enough threads for the kernel's parallel read-ahead on a few open images.
  fuse_loop_cfg_set_max_threads(loop.get(), 32);
  const int rc = fuse_session_loop_mt(session.get(), loop.get());
  if (rc < 0) return Status::IOError("FUSE loop failed: " + std::string(std::strerror(-rc)));
  return Status::OK();
}

}  // namespace portalbd::fuse
