// Daemon: owns everything one portalbd process runs — the object store, the
// volume engine, the NBD server and the control socket — and their order of
// start and stop.
//
// Start: state dir (made private, locked) -> store -> volume (replay) -> NBD
//        listeners -> control socket -> GC -> metrics listener -> "portalbd started".
//        With --serve-snapshot: store -> snapshot reader (no lease, nothing
//        written) -> NBD listeners -> control socket (read-only commands).
// Stop:  metrics listener -> control socket -> NBD server (stop accepting, finish in-flight
//        requests) -> request trace closed -> volume close (final flush) -> exit status.
//
// Thread-safety: start()/stop() from the main thread only; the control
// handlers run on control-socket threads and only read thread-safe state.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "src/config/config.h"
#include "src/util/fd.h"
#include "src/util/status.h"

namespace portalbd {

class Volume;
class SnapshotReader;
class ObjectStore;
class CountingStore;
class WriterLease;
namespace nbd {
class ExportProvider;
}
class BackgroundGc;
class FuseMount;
class MetricsServer;
namespace nbd {
class Server;
class TraceRecorder;
}  // namespace nbd
namespace ctl {
class ControlServer;
}

class Daemon {
 public:
  explicit Daemon(Config config);
  ~Daemon();

  Status start();
  // Stops serving and flushes. Returns the flush result.
  Status stop();
  // After a failed start(): closes whatever started, without the shutdown
  // log lines of a daemon that ran.
  void abandon();

 private:
  Status lock_state_dir();
  void release_lease();
  // --serve-snapshot: the rest of start() for a read-only snapshot reader
  // (daemon_reader.cc): no lease, no GC, nothing written to storage.
  Status start_snapshot_reader();
  Status start_nbd_server();     // over exports_
  Status make_control_server();  // makes control_; handlers, then start(), are the caller's

  const Config config_;
  UniqueFd state_lock_;
  std::shared_ptr<ObjectStore> store_;
  // The same store, counting the requests that reach it (portalctl status).
  std::shared_ptr<CountingStore> requests_;
  // Claimed after the store opens and before the volume does (daemon.cc);
  // a start that fails after the claim releases it (abandon()).
  std::shared_ptr<WriterLease> lease_;
  std::shared_ptr<Volume> volume_;
  std::shared_ptr<SnapshotReader> reader_;  // with --serve-snapshot, instead of volume_ and lease_
  std::unique_ptr<nbd::ExportProvider> exports_;
  std::unique_ptr<nbd::Server> nbd_;
  std::shared_ptr<nbd::TraceRecorder> trace_;  // null unless nbd.trace_file is set
  std::unique_ptr<ctl::ControlServer> control_;
  std::unique_ptr<BackgroundGc> gc_;
  std::unique_ptr<FuseMount> fuse_;
  std::unique_ptr<MetricsServer> metrics_;  // null unless metrics.address is set
  std::chrono::steady_clock::time_point started_;
};

}  // namespace portalbd
