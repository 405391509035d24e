#include "daemon/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ctl/control_server.h"
#include "daemon/background_gc.h"
#include "daemon/control_handlers.h"
#include "daemon/exports.h"
#include "daemon/fuse_mount.h"
#include "daemon/metrics_collector.h"
#include "daemon/metrics_server.h"
#include "daemon/sd_notify.h"
#include "nbd/server.h"
#include "nbd/trace.h"
#include "src/engine/volume.h"
#include "src/log/log.h"
#include "src/store/counting_store.h"
#include "src/store/object_store.h"
#include "src/store/volume_encryption.h"

namespace portalbd {
namespace fs = std::filesystem;

Daemon::Daemon(Config config) : config_(std::move(config)) {}
Daemon::~Daemon() = default;

namespace {

// The state dir holds the index and, by default, the file:// objects: the
// volume's bytes. Owner only, whatever the umask or an older portalbd left
// (the files inside may predate portalbd's umask of 077). A directory we may
// not chmod (not ours, or a filesystem without modes) is served with a warning.
void make_state_dir_private(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return;  // opening the lock file inside says why
  const mode_t mode = st.st_mode & 07777;
  if ((mode & 077) == 0) return;
  const mode_t tightened = mode & 07700;
  if (::chmod(dir.c_str(), tightened) != 0) {
    log::get("portalbd")
        ->warn(
            "state directory is open to other users and cannot be made private path={} mode={:04o} "
            "error={}",
            dir, mode, log::quote(std::strerror(errno)));
    return;
  }
  log::get("portalbd")
      ->info(
          "state directory was open to other users; made it private path={} mode_was={:04o} "
          "mode={:04o}",
          dir, mode, tightened);
}

}  // namespace

// One daemon per state directory: the SQLite index must have one writer.
Status Daemon::lock_state_dir() {
  std::error_code ec;
  fs::create_directories(config_.state_dir, ec);
  if (ec) return Status::IOError("cannot create state directory " + config_.state_dir + ": " + ec.message());
  make_state_dir_private(config_.state_dir);
  const std::string path = config_.state_dir + "/portalbd.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {0};
    (void)!::pread(fd.get(), holder, sizeof holder - 1, 0);
    return Status::Busy("state directory " + config_.state_dir + " is in use by another portalbd (pid " +
                        std::string(holder).substr(0, std::string(holder).find('\n')) + ")");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  (void)!::ftruncate(fd.get(), 0);
  (void)!::pwrite(fd.get(), pid.data(), pid.size(), 0);
  state_lock_ = std::move(fd);
  return Status::OK();
}

Status Daemon::start() {
  auto logger = log::get("portalbd");
  started_ = std::chrono::steady_clock::now();
  PBD_RETURN_IF_ERROR(lock_state_dir());

  const std::string url = effective_storage_url(config_);
  auto store =
      open_object_store(url, {{"AWS_ENDPOINT_URL_S3", config_.s3_endpoint},
                              {"AWS_ENDPOINT_URL", config_.s3_endpoint},
                              {"AWS_REGION", config_.s3_region},
                              {"AWS_DEFAULT_REGION", config_.s3_region},
                              {"AWS_PROFILE", config_.s3_profile},
                              {"AWS_SHARED_CREDENTIALS_FILE", config_.s3_credentials_file},
                              {"PORTALBD_S3_CONNECT_TIMEOUT_MS", std::to_string(config_.s3_connect_timeout_ms)},
                              {"PORTALBD_S3_STALL_TIMEOUT_MS", std::to_string(config_.s3_stall_timeout_ms)},
                              {"PORTALBD_S3_REQUEST_TIMEOUT_MS", std::to_string(config_.s3_request_timeout_ms)},
                              // A storage call, retries included, gives up when a FLUSH would.
                              {"PORTALBD_S3_OPERATION_TIMEOUT_MS", std::to_string(config_.flush_timeout_ms)}});
  if (!store.ok()) return store.status();
  // Every request from here on, the lease's included, is counted (status).
  requests_ = std::make_shared<CountingStore>(*store);
  // Encryption is settled before the lease, the first write: a daemon with
  // a missing or wrong key refuses here and writes nothing.
  auto sealed = open_volume_store(requests_, {config_.encryption_key_file, config_.encryption_passphrase_file});
  if (!sealed.ok()) return sealed.status();
  store_ = *sealed;
  if (store_ != requests_) logger->info("volume encryption on cipher=aes-256-gcm storage={}", log::quote(url));
  if (!config_.serve_snapshot.empty()) return start_snapshot_reader();  // no lease, nothing written (daemon_reader.cc)

  // The lease comes before Volume::Open, and must: the new writer lists
  // storage only once it holds the volume, so any segment the previous
  // holder confirmed after its PUT (WriterLease L6) is in that listing. A
  // start that fails from here on gives the claim back (abandon()).
  LeaseOptions lo;
  lo.take_over = config_.take_over;
  auto lease = WriterLease::Acquire(store_, lo);
  if (!lease.ok()) return lease.status();
  lease_ = std::move(*lease);
  logger->info("claimed the volume fencing={} holder={}",
               store_->supports_conditional_put() ? "conditional-put" : "lease-expiry",
               log::quote(lease_->holder().describe()));

  VolumeOptions vo;
  vo.lease = lease_;
  vo.size_bytes = config_.disk_size_set ? config_.disk_size_gb << 30 : 0;
  vo.grow = config_.grow;
  vo.repair = config_.repair;
  if (vo.repair) {
    logger->warn("repair mode: damaged storage is accepted, its losses logged and unreadable objects quarantined");
  }
  vo.segment_bytes = config_.segment_bytes;
  vo.write_buffer_bytes = config_.write_buffer_bytes;
  vo.flush_interval_ms = config_.flush_interval_ms;
  vo.flush_timeout_ms = config_.flush_timeout_ms;
  const uint64_t upload_concurrency = effective_upload_concurrency(config_, url);  // at most 16 (config_rules)
  const std::string compression = effective_compression(config_, url);
  vo.upload_concurrency = static_cast<uint32_t>(upload_concurrency);
  vo.cache_bytes = config_.cache_bytes;
  vo.disk_cache_bytes = effective_disk_cache_bytes(config_, url);  // 0 but on s3://
  vo.disk_cache_dir = effective_disk_cache_dir(config_);
  vo.fetch_concurrency = static_cast<uint32_t>(config_.fetch_concurrency);
  vo.read_ahead_bytes = effective_read_ahead_bytes(config_, url);
  vo.flatten_min_depth = static_cast<uint32_t>(std::min<uint64_t>(config_.flatten_depth, UINT32_MAX));
  vo.index_cache_bytes = config_.index_bytes;
  auto codec = codec_from_name(compression);
  if (!codec.ok()) return codec.status();
  vo.codec = *codec;
  // memory:// starts empty every time: an index file would only cost I/O.
  vo.index_path = store_->persistent() ? config_.state_dir + "/index.sqlite" : kInMemoryIndex;
  vo.ephemeral = !store_->persistent();
  const std::string journal_dir = config_.journal_dir.empty() ? config_.state_dir + "/journal" : config_.journal_dir;
  if (!vo.ephemeral && effective_journal_enabled(config_, url)) {
    vo.journal_dir = journal_dir;
    vo.journal_bytes = config_.journal_bytes;
    vo.journal_max_lag_ms = config_.journal_max_lag_ms;
    vo.journal_direct_write_bytes = effective_journal_direct_write_bytes(config_, url);
  } else if (!vo.ephemeral && std::filesystem::exists(journal_dir + "/meta")) {
    // Off now, but an earlier run with it on may have left answered writes
    // there: the volume uploads them and removes the journal at open.
    vo.journal_dir = journal_dir;
    vo.journal_drain = true;
  }
  if (vo.ephemeral) {
    logger->info("storage keeps nothing past this process: FLUSH and FUA return at once storage={}", store_->url());
  }
  auto volume = Volume::Open(store_, vo);
  if (!volume.ok()) {
    release_lease();
    return volume.status();
  }
  volume_ = *volume;
  exports_ = std::make_unique<VolumeExports>(config_.export_name, volume_);

  PBD_RETURN_IF_ERROR(start_nbd_server());
  PBD_RETURN_IF_ERROR(make_control_server());
  register_control_handlers(control_.get(),
                            {&config_, volume_.get(), &requests_->inner(), requests_.get(), nbd_.get(), started_});
  PBD_RETURN_IF_ERROR(control_->start());

  if (!config_.fuse_mountpoint.empty()) {
    // Under TLS the view is a TLS client of this daemon like any other,
    // with the daemon's own credentials (PSK first: it needs no client
    // certificate when --tls-verify-peer is set).
    fuse::NbdTls tls;
    tls.enabled = config_.tls != "off";
    tls.certificates = config_.tls_certificates;
    tls.psk_file = config_.tls_psk_file;
    fuse_ =
        std::make_unique<FuseMount>(config_.fuse_mountpoint, config_.nbd_unix,
                                    config_.nbd_address.empty() ? "" : nbd_->tcp_address(), config_.export_name, tls);
    PBD_RETURN_IF_ERROR(fuse_->start());
  }

  GcOptions gc;
  gc.grace_ms = static_cast<int64_t>(config_.gc_grace_ms);
  gc_ = std::make_unique<BackgroundGc>(volume_, gc, config_.gc_interval_s);
  gc_->start();

  if (!config_.metrics_address.empty()) {
    MetricsSources sources{volume_.get(), &requests_->inner(), requests_.get(),     nbd_.get(),
                           gc_.get(),     lease_.get(),        config_.cache_bytes, started_};
    metrics_ = std::make_unique<MetricsServer>(MetricsServerOptions{config_.metrics_address},
                                               [sources] { return render_metrics(sources); });
    PBD_RETURN_IF_ERROR(metrics_->start());
  }

  const uint64_t size = volume_->size_bytes();
  logger->info(
      "portalbd started socket={} size_gb={} nbd={} storage=\"{}\" state_dir={} upload_concurrency={} compression={} "
      "journal={}",
      config_.control_socket, size >> 30, config_.nbd_address.empty() ? "off" : nbd_->tcp_address(), store_->url(),
      config_.state_dir, upload_concurrency, compression, vo.journal_dir.empty() ? "off" : vo.journal_dir);
  log::get("daemon")->info("NBD server accepting connections export={} size_bytes={}", config_.export_name, size);
  notify_service_manager("READY=1\nSTATUS=serving " + config_.export_name + " (" + std::to_string(size) +
                         " bytes) on " + (config_.nbd_address.empty() ? config_.nbd_unix : nbd_->tcp_address()) +
                         "\nMAINPID=" + std::to_string(::getpid()));
  if (!store_->persistent()) {
    logger->warn("storage is memory://: the volume is lost when portalbd stops");
  }
  return Status::OK();
}

Status Daemon::start_nbd_server() {
  nbd::ServerOptions so;
  so.tcp_address = config_.nbd_address;
  so.unix_path = config_.nbd_unix;
  so.max_connections = static_cast<uint32_t>(config_.max_connections);  // at most 65536 (config_rules)
  so.max_write_payload_bytes = config_.max_write_payload_bytes;
  so.tls.mode = nbd::parse_tls_mode(config_.tls).value();  // checked by validate_config
  so.tls.certificates_dir = config_.tls_certificates;
  so.tls.verify_peer = config_.tls_verify_peer;
  so.tls.psk_file = config_.tls_psk_file;
  if (!config_.trace_file.empty()) {
    auto trace = nbd::TraceRecorder::Open(config_.trace_file);
    if (!trace.ok()) return trace.status();
    trace_ = *trace;
    so.trace = trace_;
    log::get("portalbd")->info("recording NBD requests to {}", config_.trace_file);
  }
  nbd_ = std::make_unique<nbd::Server>(*exports_, so);
  return nbd_->start();
}

// Made, not started: the caller registers its handlers first.
Status Daemon::make_control_server() {
  ctl::ControlServerOptions co;
  co.idle_timeout_ms = static_cast<int>(config_.control_idle_timeout_ms);  // at most an hour (config_rules)
  if (!config_.control_socket_group.empty()) {
    co.group = config_.control_socket_group;  // an unknown group fails the start, naming it
    co.mode = 0660;
  }
  control_ = std::make_unique<ctl::ControlServer>(config_.control_socket, co);
  return Status::OK();
}

void Daemon::abandon() {
  if (metrics_) metrics_->stop();
  if (fuse_) fuse_->stop();
  if (gc_) gc_->stop();
  if (control_) control_->stop();
  if (nbd_) nbd_->stop();
  if (trace_) (void)trace_->close();
  if (volume_) (void)volume_->close();
  if (reader_) reader_->close();
  release_lease();  // close() released it if its flush worked; once is enough
}

// A start that failed after the claim must not block the next one.
void Daemon::release_lease() {
  if (!lease_) return;
  if (Status st = lease_->release(); !st.ok()) {
    log::get("portalbd")
        ->warn("could not remove the writer lease after a failed start object={} error={}", WriterLease::kKey,
               log::quote(st.ToString()));
  }
}

Status Daemon::stop() {
  auto logger = log::get("portalbd");
  logger->info("shutting down: finishing requests and flushing the write buffer");
  notify_service_manager("STOPPING=1\nSTATUS=final flush");
  if (metrics_) metrics_->stop();  // it reads everything below
  if (fuse_) fuse_->stop();        // it is a client of the NBD server: first
  if (control_) control_->stop();
  if (nbd_) nbd_->stop();
  if (trace_) {
    Status ts = trace_->close();  // every request is answered by now
    if (!ts.ok())
      logger->warn("NBD trace incomplete: {}", ts.ToString());
    else
      logger->info("NBD trace written to {} ({} requests dropped)", trace_->path(), trace_->dropped());
  }
  if (gc_) gc_->stop();
  Status st;
  if (volume_) st = volume_->close();
  if (reader_) reader_->close();
  if (st.ok()) {
    logger->info("portalbd stopped cleanly");
  }
  return st;
}

}  // namespace portalbd
