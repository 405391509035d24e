// Daemon::start_snapshot_reader(): `portalbd --serve-snapshot NAME`, one
// snapshot of the volume served read-only beside the volume's writer, on as
// many hosts as want it (src/engine/snapshot_reader.h; docs/design.md,
// "Read-only snapshot readers"). It claims no writer lease and writes nothing
// to storage: no GC, no checkpoints, no journal, no manifest. Its index is a
// private cache under the state dir, rebuilt from storage at every start.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "ctl/control_server.h"
#include "daemon/control_handlers.h"
#include "daemon/daemon.h"
#include "daemon/exports.h"
#include "daemon/sd_notify.h"
#include "nbd/server.h"
#include "src/engine/snapshot_reader.h"
#include "src/log/log.h"
#include "src/store/counting_store.h"

namespace portalbd {

Status Daemon::start_snapshot_reader() {
  auto logger = log::get("portalbd");
  for (auto [set, what] : {std::pair{!config_.fuse_mountpoint.empty(), "the FUSE view"},
                           std::pair{!config_.metrics_address.empty(), "the metrics endpoint"}}) {
    if (set) logger->warn("a snapshot reader does not serve {}; it is off", what);
  }
  const std::string url = effective_storage_url(config_);
  SnapshotReaderOptions ro;
  ro.snapshot = config_.serve_snapshot;
  ro.index_dir = config_.state_dir + "/snapshot-reader";
  ro.volume.cache_bytes = config_.cache_bytes;
  ro.volume.disk_cache_bytes = effective_disk_cache_bytes(config_, url);
  ro.volume.disk_cache_dir = effective_disk_cache_dir(config_);
  ro.volume.fetch_concurrency = static_cast<uint32_t>(config_.fetch_concurrency);
  ro.volume.read_ahead_bytes = effective_read_ahead_bytes(config_, url);
  ro.volume.flatten_min_depth = static_cast<uint32_t>(std::min<uint64_t>(config_.flatten_depth, UINT32_MAX));
  ro.volume.index_cache_bytes = config_.index_bytes;
  auto reader = SnapshotReader::Open(store_, ro);
  if (!reader.ok()) return reader.status().With("serve snapshot '" + config_.serve_snapshot + "'");
  reader_ = *reader;
  exports_ = std::make_unique<SnapshotReaderExports>(config_.export_name, reader_);
  PBD_RETURN_IF_ERROR(start_nbd_server());
  PBD_RETURN_IF_ERROR(make_control_server());
  ControlContext cc{&config_, nullptr, &requests_->inner(), requests_.get(), nbd_.get(), started_};
  cc.reader = reader_.get();
  register_control_handlers(control_.get(), cc);
  PBD_RETURN_IF_ERROR(control_->start());

  const uint64_t size = reader_->size_bytes();
  logger->info(
      "portalbd started read-only socket={} snapshot={} size_gb={} nbd={} storage=\"{}\" state_dir={} "
      "writer_lease=none",
      config_.control_socket, config_.serve_snapshot, size >> 30,
      config_.nbd_address.empty() ? "off" : nbd_->tcp_address(), store_->url(), config_.state_dir);
  log::get("daemon")->info("NBD server accepting connections export={} snapshot={} size_bytes={} read_only=true",
                           config_.export_name, config_.serve_snapshot, size);
  notify_service_manager("READY=1\nSTATUS=serving snapshot " + config_.serve_snapshot + " read-only as " +
                         config_.export_name + " (" + std::to_string(size) + " bytes) on " +
                         (config_.nbd_address.empty() ? config_.nbd_unix : nbd_->tcp_address()) +
                         "\nMAINPID=" + std::to_string(::getpid()));
  return Status::OK();
}

}  // namespace portalbd
