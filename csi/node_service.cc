#include "csi/node_service.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <thread>

#include "csi/capabilities.h"
#include "csi/command.h"
#include "csi/registry.h"
#include "csi/volume_access.h"
#include "src/log/log.h"
#include "src/util/fd.h"

namespace portalbd::csi {

using namespace ::csi::v1;
using grpc::StatusCode;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kDaemonStartTimeoutMs = 60000;
constexpr int kDaemonStopTimeoutMs = 120000;

bool pid_alive(int pid) {
  if (pid <= 0) return false;
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) == pid) return false;  // our child, just reaped
  if (kill(pid, 0) != 0) return false;
  // A zombie (exited, not yet reaped by its parent) is gone too.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return !(paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z');
}

// The last `lines` lines of a file, for an error message.
std::string tail_of(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += all[i] + "\n";
  return out;
}

bool device_connected(const std::string& device) {
  return !device.empty() && run_command({"nbd-client", "-c", device}).exit_code == 0;
}

Result<uint64_t> device_bytes(const std::string& device) {
  CommandResult r = run_command({"blockdev", "--getsize64", device});
  if (r.exit_code != 0) return Status::IOError("blockdev --getsize64 " + device + ": " + r.output);
  return std::stoull(r.output);
}

// The key files of a staged volume (node_service.h).
std::string key_file_path(const std::string& dir) { return dir + "/encryption.key"; }
std::string passphrase_file_path(const std::string& dir) { return dir + "/encryption.passphrase"; }

// Writes `secret` to `path` through a temporary file made 0600 before any
// byte is in it, then renamed over `path`: never readable by others, never
// half written.
Status write_private_file(const std::string& path, const std::string& secret) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // a leftover of a crash: O_EXCL below must make a new one
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Status::IOError("create " + tmp + ": " + std::strerror(errno));
  Status st = write_all(fd.get(), std::as_bytes(std::span(secret.data(), secret.size())));
  if (st.ok()) st = fsync_fd(fd.get(), tmp);
  fd.reset();
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = Status::IOError("rename " + tmp + ": " + std::strerror(errno));
  }
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

grpc::Status check_volume_id(const std::string& id) {
  if (id.empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_id is empty");
  if (!plausible_volume_id(id)) return grpc_error(StatusCode::NOT_FOUND, "no volume " + id);
  return grpc::Status::OK;
}

}  // namespace

NodeService::NodeService(NodeOptions options) : options_(std::move(options)) {
  reaper_ = std::thread([this] { reap_children(); });
  if (options_.mailbox_poll_ms > 0) {
    mailbox_ = std::make_unique<MailboxServer>([this] { return staged_volumes(); }, options_.mailbox_poll_ms,
                                               options_.state_dir);
  }
}

std::vector<MailboxServer::StagedVolume> NodeService::staged_volumes() {
  std::vector<MailboxServer::StagedVolume> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.state_dir + "/volumes", ec)) {
    const std::string id = entry.path().filename().string();
    Staged s;
    if (!load_staged(id, &s).ok() || s.storage_url.empty()) continue;
    if (!s.snapshot.empty()) continue;  // a snapshot reader: no snapshot of it is taken, nothing to answer
    std::map<std::string, std::string> settings;
    {
      std::lock_guard lock(children_mu_);
      if (auto it = settings_.find(id); it != settings_.end()) settings = it->second;
    }
    EncryptionKeySource key;
    const std::string dir = node_volume_dir(options_.state_dir, id);
    if (fs::exists(key_file_path(dir), ec)) key.key_file = key_file_path(dir);
    if (fs::exists(passphrase_file_path(dir), ec)) key.passphrase_file = passphrase_file_path(dir);
    out.push_back({id, s.storage_url, control_socket_path(options_.state_dir, id),
                   nbd_socket_path(options_.state_dir, id), settings, key,
                   NbdTls{options_.tls_certificates, options_.tls_hostname}});
  }
  return out;
}

NodeService::~NodeService() {
  mailbox_.reset();
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  reaper_.join();
}

void NodeService::reap_children() {
  std::unique_lock stop_lock(stop_mu_);
  while (!stop_cv_.wait_for(stop_lock, std::chrono::milliseconds(200), [this] { return stopping_; })) {
    std::lock_guard lock(children_mu_);
    std::erase_if(children_, [](int pid) {
      int status = 0;
      pid_t r = waitpid(pid, &status, WNOHANG);
      return r == pid || (r < 0 && errno == ECHILD);
    });
  }
}

// ---- stage.json

Status NodeService::load_staged(const std::string& id, Staged* out) {
  const std::string path = node_volume_dir(options_.state_dir, id) + "/stage.json";
  std::ifstream in(path);
  if (!in) return Status::NotFound("volume " + id + " is not staged on this node");
  try {
    json j = json::parse(in);
    out->daemon_pid = j.value("daemon_pid", 0);
    out->device = j.value("device", "");
    out->staging_path = j.value("staging_path", "");
    out->fs_type = j.value("fs_type", "");
    out->storage_url = j.value("storage_url", "");
    out->snapshot = j.value("snapshot", "");
  } catch (const std::exception& e) {
    return Status::Corruption(path + " is unreadable: " + e.what());
  }
  return Status::OK();
}

Status NodeService::save_staged(const std::string& id, const Staged& s) {
  const std::string path = node_volume_dir(options_.state_dir, id) + "/stage.json";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json{{"daemon_pid", s.daemon_pid}, {"device", s.device},           {"staging_path", s.staging_path},
                {"fs_type", s.fs_type},       {"storage_url", s.storage_url}, {"snapshot", s.snapshot}}
               .dump(2)
        << "\n";
    if (!out.flush()) return Status::IOError("write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::IOError("rename " + tmp + ": " + ec.message());
  return Status::OK();
}

// ---- the daemon

Result<EncryptionKeySource> NodeService::write_key_file(
    const std::string& id, const google::protobuf::Map<std::string, std::string>& secrets) {
  auto source = encryption_secret(secrets);
  if (!source.ok()) return source.status().With("volume " + id);
  const std::string dir = node_volume_dir(options_.state_dir, id);
  EncryptionKeySource files;
  if (!source->key.empty()) files.key_file = key_file_path(dir);
  // The passphrase as the secret holds it: the daemon trims a newline as
  // the controller does.
  if (!source->passphrase.empty()) files.passphrase_file = passphrase_file_path(dir);
  std::error_code ec;
  if (files.key_file.empty()) fs::remove(key_file_path(dir), ec);
  if (files.passphrase_file.empty()) fs::remove(passphrase_file_path(dir), ec);
  if (!files.configured()) return files;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("create " + dir + ": " + ec.message());
  Status st = files.is_key() ? write_private_file(files.key_file, source->key)
                             : write_private_file(files.passphrase_file, source->passphrase);
  if (!st.ok()) return st.With("write the encryption key of volume " + id);
  return files;
}

void NodeService::remove_key_files(const std::string& id) {
  const std::string dir = node_volume_dir(options_.state_dir, id);
  std::error_code ec;
  fs::remove(key_file_path(dir), ec);
  fs::remove(passphrase_file_path(dir), ec);
}

Result<int> NodeService::ensure_daemon(const std::string& id, const std::string& url, const std::string& snapshot,
                                       int known_pid, const std::map<std::string, std::string>& settings,
                                       const EncryptionKeySource& key) {
  const std::string dir = node_volume_dir(options_.state_dir, id);
  const std::string socket = control_socket_path(options_.state_dir, id);
  if (daemon_answers(socket)) return known_pid;
  std::error_code ec;
  fs::create_directories(dir + "/state", ec);
  if (ec) return Status::IOError("create " + dir + ": " + ec.message());
  fs::remove(socket, ec);
  fs::remove(nbd_socket_path(options_.state_dir, id), ec);
  const std::string log_path = dir + "/portalbd.log";
  std::vector<std::string> argv = {options_.portalbd_bin,
                                   "--storage",
                                   url,
                                   "--state-dir",
                                   dir + "/state",
                                   "--socket",
                                   socket,
                                   "--nbd-address",
                                   "",
                                   "--nbd-unix",
                                   nbd_socket_path(options_.state_dir, id),
                                   "--export-name",
                                   id};
  // A reader: no lease, no writes, its index a private cache in its own state dir.
  if (!snapshot.empty()) argv.insert(argv.end(), {"--serve-snapshot", snapshot});
  if (!key.key_file.empty()) argv.insert(argv.end(), {"--encryption-key-file", key.key_file});
  if (!key.passphrase_file.empty()) argv.insert(argv.end(), {"--encryption-passphrase-file", key.passphrase_file});
  if (!options_.tls_certificates.empty()) {
    argv.insert(argv.end(), {"--tls", "require", "--tls-certificates", options_.tls_certificates, "--tls-verify-peer"});
  }
  auto pid = spawn_detached(argv, log_path, settings);  // the secrets reach the daemon as its environment
  if (!pid.ok()) return pid.status();
  {
    std::lock_guard lock(children_mu_);
    children_.push_back(*pid);
  }
  auto logger = log::get("csi");
  logger->info("started portalbd for volume id={} pid={} storage={}{}", id, *pid, log::quote(url),
               snapshot.empty() ? "" : " serving snapshot " + snapshot + " read-only");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDaemonStartTimeoutMs);
  while (std::chrono::steady_clock::now() < deadline) {
    if (daemon_answers(socket)) return *pid;
    if (!pid_alive(*pid)) {
      const std::string why = tail_of(log_path, 5);
      // The lease: another daemon, alive, holds the volume.
      if (why.find("claimed") != std::string::npos || why.find("lease") != std::string::npos ||
          why.find("in use") != std::string::npos) {
        return Status::Busy("portalbd for volume " + id + " refused to start: " + why);
      }
      // An encrypted volume staged without its key, or with a wrong one, or
      // a plain one with a key: the daemon's own sentence says which.
      size_t at = std::string::npos;
      for (const char* refusal : {"is encrypted", "wrong encryption key", "is not encrypted"}) {
        if (size_t found = why.rfind(refusal); found != std::string::npos) at = found;
      }
      if (at != std::string::npos) {
        const size_t newline = why.rfind('\n', at);
        const size_t begin = newline == std::string::npos ? 0 : newline + 1;
        const size_t end = std::min(why.find('\n', at), why.size());
        return Status::InvalidArgument(
            "portalbd cannot open volume " + id +
            " (give its key in the encryptionKey or encryptionPassphrase secret): " + why.substr(begin, end - begin));
      }
      return Status::IOError("portalbd for volume " + id + " exited at start: " + why);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(*pid, SIGTERM);
  return Status::Unavailable("portalbd for volume " + id + " did not answer within " +
                             std::to_string(kDaemonStartTimeoutMs / 1000) + " s; log: " + log_path);
}

Status NodeService::stop_daemon(const std::string& id, int pid) {
  const std::string socket = control_socket_path(options_.state_dir, id);
  if (pid <= 0 || !pid_alive(pid)) {
    if (daemon_answers(socket)) return Status::IOError("a daemon answers on " + socket + " but its pid is unknown");
    return Status::OK();
  }
  kill(pid, SIGTERM);  // the daemon flushes, then exits
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDaemonStopTimeoutMs);
  while (pid_alive(pid)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable("portalbd pid " + std::to_string(pid) + " of volume " + id + " did not stop within " +
                                 std::to_string(kDaemonStopTimeoutMs / 1000) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  log::get("csi")->info("stopped portalbd for volume id={} pid={}", id, pid);
  return Status::OK();
}

// ---- the NBD device

Result<std::string> NodeService::ensure_attached(const std::string& id, const std::string& known_device,
                                                 bool read_only) {
  if (device_connected(known_device)) return known_device;
  std::error_code ec;
  if (!fs::exists("/sys/module/nbd", ec)) (void)run_command({"modprobe", "nbd"});
  for (int n = 0; n < 256; ++n) {
    const std::string dev = "/dev/nbd" + std::to_string(n);
    if (!fs::exists(dev, ec)) break;
    if (device_connected(dev)) continue;
    std::vector<std::string> argv = {"nbd-client",  "-unix", nbd_socket_path(options_.state_dir, id), dev, "-name", id,
                                     "-block-size", "4096"};
    if (read_only) argv.push_back("-readonly");
    if (!options_.tls_certificates.empty()) {
      const std::string& d = options_.tls_certificates;
      argv.insert(argv.end(), {"-enable-tls", "-cacertfile", d + "/ca-cert.pem", "-certfile", d + "/client-cert.pem",
                               "-keyfile", d + "/client-key.pem", "-tlshostname", options_.tls_hostname});
    }
    Status st = run_checked(argv);
    if (st.ok()) {
      log::get("csi")->info("attached volume id={} device={}", id, dev);
      return dev;
    }
    if (device_connected(dev)) continue;  // lost a race for it
    return st;
  }
  return Status::NoSpace("no free /dev/nbdN on this node (is the nbd module loaded with enough nbds_max?)");
}

// ---- RPCs

grpc::Status NodeService::NodeStageVolume(grpc::ServerContext*, const NodeStageVolumeRequest* req,
                                          NodeStageVolumeResponse*) {
  std::lock_guard lock(mu_);
  if (auto st = check_volume_id(req->volume_id()); !st.ok()) return st;
  if (req->staging_target_path().empty())
    return grpc_error(StatusCode::INVALID_ARGUMENT, "staging_target_path is empty");
  if (!req->has_volume_capability()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_capability is missing");
  std::string reader_snapshot;
  if (auto r = req->volume_context().find(kReaderSnapshotContext); r != req->volume_context().end()) {
    reader_snapshot = r->second;
  }
  if (std::string why = unsupported_reason_for(req->volume_capability(), !reader_snapshot.empty(), req->volume_id());
      !why.empty()) {
    return grpc_error(StatusCode::INVALID_ARGUMENT, why);
  }
  auto it = req->volume_context().find(kStorageUrlContext);
  if (it == req->volume_context().end() || it->second.empty()) {
    return grpc_error(StatusCode::INVALID_ARGUMENT,
                      "volume_context has no storageUrl (was the volume made by "
                      "portalbd-csi's CreateVolume?)");
  }
  if (Status st = check_storage_url(it->second); !st.ok()) return to_grpc(st);
  const std::string& id = req->volume_id();
  const std::string& staging = req->staging_target_path();
  const bool block = req->volume_capability().has_block();

  Staged s;
  if (Status st = load_staged(id, &s); st.ok()) {
    if (!s.staging_path.empty() && s.staging_path != staging) {
      return grpc_error(StatusCode::FAILED_PRECONDITION,
                        "volume " + id + " is staged at " + s.staging_path + ", not " + staging);
    }
  }
  s.staging_path = staging;
  s.fs_type = block ? "" : fs_type_of(req->volume_capability());
  s.storage_url = it->second;
  s.snapshot = reader_snapshot;

  const auto settings = store_settings(req->secrets());
  {
    std::lock_guard children_lock(children_mu_);
    settings_[id] = settings;
  }
  auto key = write_key_file(id, req->secrets());
  if (!key.ok()) return to_grpc(key.status());
  auto pid = ensure_daemon(id, it->second, s.snapshot, s.daemon_pid, settings, *key);
  if (!pid.ok()) {
    remove_key_files(id);  // no daemon runs for it: the key need not stay here
    return to_grpc(pid.status());
  }
  s.daemon_pid = *pid;
  if (Status st = save_staged(id, s); !st.ok()) return to_grpc(st);
  auto dev = ensure_attached(id, s.device, !s.snapshot.empty());
  if (!dev.ok()) return to_grpc(dev.status());
  s.device = *dev;
  if (Status st = save_staged(id, s); !st.ok()) return to_grpc(st);
  if (block) return grpc::Status::OK;

  std::error_code ec;
  fs::create_directories(staging, ec);
  if (!is_mount_point(staging)) {
    CommandResult probe = run_command({"blkid", "-p", "-o", "value", "-s", "TYPE", s.device});
    std::string found = probe.output;
    while (!found.empty() && (found.back() == '\n' || found.back() == ' ')) found.pop_back();
    if ((probe.exit_code == 2 || found.empty()) && !s.snapshot.empty()) {
      return grpc_error(StatusCode::FAILED_PRECONDITION,
                        "volume " + id + " serves snapshot " + s.snapshot +
                            ", which holds no filesystem; a read-only volume is never formatted");
    }
    if (probe.exit_code == 2 || found.empty()) {  // 2: nothing found
      const bool xfs = s.fs_type == "xfs";
      Status st = xfs ? run_checked({"mkfs.xfs", "-q", s.device})
                      : run_checked({"mkfs.ext4", "-q", "-F", "-E", "nodiscard", s.device});
      if (!st.ok()) return to_grpc(st);
      log::get("csi")->info("formatted volume id={} fs={}", id, s.fs_type);
    } else if (found != s.fs_type) {
      return grpc_error(StatusCode::FAILED_PRECONDITION,
                        "volume " + id + " holds a " + found + " filesystem, not the " + s.fs_type + " asked for");
    }
    std::vector<std::string> mount = {"mount", "-t", s.fs_type};
    for (const auto& f : req->volume_capability().mount().mount_flags()) mount.insert(mount.end(), {"-o", f});
    if (is_read_only_mode(req->volume_capability())) mount.insert(mount.end(), {"-o", "ro"});
    // A snapshot's filesystem may need its journal replayed; the device is
    // read-only, so that must not be tried.
    if (!s.snapshot.empty()) mount.insert(mount.end(), {"-o", s.fs_type == "xfs" ? "norecovery" : "noload"});
    mount.insert(mount.end(), {s.device, staging});
    if (Status st = run_checked(mount); !st.ok()) return to_grpc(st);
  }
  // A volume expanded while it was detached: grow the filesystem to the device.
  if (!is_read_only_mode(req->volume_capability()) && s.snapshot.empty()) {
    Status st = s.fs_type == "xfs" ? run_checked({"xfs_growfs", staging}) : run_checked({"resize2fs", s.device});
    if (!st.ok()) log::get("csi")->warn("growing the filesystem of volume id={} failed: {}", id, st.message());
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeUnstageVolume(grpc::ServerContext*, const NodeUnstageVolumeRequest* req,
                                            NodeUnstageVolumeResponse*) {
  std::lock_guard lock(mu_);
  if (req->volume_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_id is empty");
  if (req->staging_target_path().empty())
    return grpc_error(StatusCode::INVALID_ARGUMENT, "staging_target_path is empty");
  if (!plausible_volume_id(req->volume_id())) return grpc::Status::OK;
  const std::string& id = req->volume_id();
  Staged s;
  Status loaded = load_staged(id, &s);
  if (!loaded.ok() && !loaded.is(Status::Code::kNotFound)) return to_grpc(loaded);
  // A device whose daemon is gone answers nothing: the kernel would hold
  // the unmount's writes forever. Disconnecting first fails them (EIO), so
  // the unmount below finishes; what they carried was never acknowledged.
  if (loaded.ok() && device_connected(s.device) && !daemon_answers(control_socket_path(options_.state_dir, id))) {
    log::get("csi")->warn("the daemon of volume id={} is gone: disconnecting {} before unmounting", id, s.device);
    if (Status st = run_checked({"nbd-client", "-d", s.device}); !st.ok()) return to_grpc(st);
  }
  if (is_mount_point(req->staging_target_path())) {
    Status st = run_checked({"umount", req->staging_target_path()});
    if (!st.ok() && loaded.ok() && !device_connected(s.device)) {
      st = run_checked({"umount", "-l", req->staging_target_path()});  // a dead device's filesystem
    }
    if (!st.ok()) return to_grpc(st);
  }
  if (loaded.is(Status::Code::kNotFound)) return grpc::Status::OK;  // never staged here, or done
  if (device_connected(s.device)) {
    if (Status st = run_checked({"nbd-client", "-d", s.device}); !st.ok()) return to_grpc(st);
  }
  s.device.clear();
  if (Status st = save_staged(id, s); !st.ok()) return to_grpc(st);
  if (Status st = stop_daemon(id, s.daemon_pid); !st.ok()) return to_grpc(st);
  remove_key_files(id);
  std::error_code ec;
  fs::remove(node_volume_dir(options_.state_dir, id) + "/stage.json", ec);
  {
    std::lock_guard children_lock(children_mu_);
    settings_.erase(id);
  }
  log::get("csi")->info("unstaged volume id={}", id);
  return grpc::Status::OK;
}

grpc::Status NodeService::NodePublishVolume(grpc::ServerContext*, const NodePublishVolumeRequest* req,
                                            NodePublishVolumeResponse*) {
  std::lock_guard lock(mu_);
  if (auto st = check_volume_id(req->volume_id()); !st.ok()) return st;
  if (req->target_path().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "target_path is empty");
  if (req->staging_target_path().empty()) {
    return grpc_error(StatusCode::FAILED_PRECONDITION, "staging_target_path is empty: stage the volume first");
  }
  if (!req->has_volume_capability()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_capability is missing");
  if (std::string why = unsupported_reason(req->volume_capability()); !why.empty()) {
    return grpc_error(StatusCode::INVALID_ARGUMENT, why);
  }
  Staged s;
  if (Status st = load_staged(req->volume_id(), &s); !st.ok()) {
    return grpc_error(StatusCode::FAILED_PRECONDITION, st.message());
  }
  if (std::string why = unsupported_reason_for(req->volume_capability(), !s.snapshot.empty(), req->volume_id());
      !why.empty()) {
    return grpc_error(StatusCode::INVALID_ARGUMENT, why);
  }
  const bool read_only = req->readonly() || !s.snapshot.empty();  // a snapshot reader: always
  const std::string& target = req->target_path();
  if (is_mount_point(target)) return grpc::Status::OK;
  const bool block = req->volume_capability().has_block();
  std::error_code ec;
  std::string source;
  if (block) {
    if (s.device.empty())
      return grpc_error(StatusCode::FAILED_PRECONDITION, "volume " + req->volume_id() + " is not attached");
    fs::create_directories(fs::path(target).parent_path(), ec);
    if (!fs::exists(target, ec)) std::ofstream(target).close();  // a bind mount of a device needs a file
    source = s.device;
  } else {
    if (!is_mount_point(req->staging_target_path())) {
      return grpc_error(StatusCode::FAILED_PRECONDITION,
                        "volume " + req->volume_id() + " is not mounted at " + req->staging_target_path());
    }
    fs::create_directories(target, ec);
    source = req->staging_target_path();
  }
  if (Status st = run_checked({"mount", "-o", "bind", source, target}); !st.ok()) return to_grpc(st);
  if (read_only) {
    if (Status st = run_checked({"mount", "-o", "remount,bind,ro", target}); !st.ok()) {
      (void)run_command({"umount", target});
      return to_grpc(st);
    }
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeUnpublishVolume(grpc::ServerContext*, const NodeUnpublishVolumeRequest* req,
                                              NodeUnpublishVolumeResponse*) {
  std::lock_guard lock(mu_);
  if (req->volume_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_id is empty");
  if (req->target_path().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "target_path is empty");
  const std::string& target = req->target_path();
  if (is_mount_point(target)) {
    if (Status st = run_checked({"umount", target}); !st.ok()) return to_grpc(st);
  }
  std::error_code ec;
  fs::remove(target, ec);  // the directory or file made for the mount
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetVolumeStats(grpc::ServerContext*, const NodeGetVolumeStatsRequest* req,
                                             NodeGetVolumeStatsResponse* out) {
  if (req->volume_id().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_id is empty");
  if (req->volume_path().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_path is empty");
  std::error_code ec;
  if (!fs::exists(req->volume_path(), ec)) {
    return grpc_error(StatusCode::NOT_FOUND, "volume_path " + req->volume_path() + " does not exist");
  }
  if (fs::is_regular_file(req->volume_path(), ec) || fs::is_block_file(req->volume_path(), ec)) {
    auto bytes = device_bytes(req->volume_path());
    if (!bytes.ok()) return to_grpc(bytes.status());
    auto* u = out->add_usage();
    u->set_unit(VolumeUsage::BYTES);
    u->set_total(static_cast<int64_t>(*bytes));
    return grpc::Status::OK;
  }
  struct statvfs sv {};
  if (statvfs(req->volume_path().c_str(), &sv) != 0) {
    return grpc_error(StatusCode::INTERNAL, "statvfs " + req->volume_path() + " failed");
  }
  auto* b = out->add_usage();
  b->set_unit(VolumeUsage::BYTES);
  b->set_total(static_cast<int64_t>(sv.f_blocks * sv.f_frsize));
  b->set_available(static_cast<int64_t>(sv.f_bavail * sv.f_frsize));
  b->set_used(static_cast<int64_t>((sv.f_blocks - sv.f_bfree) * sv.f_frsize));
  auto* i = out->add_usage();
  i->set_unit(VolumeUsage::INODES);
  i->set_total(static_cast<int64_t>(sv.f_files));
  i->set_available(static_cast<int64_t>(sv.f_favail));
  i->set_used(static_cast<int64_t>(sv.f_files - sv.f_ffree));
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeExpandVolume(grpc::ServerContext*, const NodeExpandVolumeRequest* req,
                                           NodeExpandVolumeResponse* out) {
  std::lock_guard lock(mu_);
  if (auto st = check_volume_id(req->volume_id()); !st.ok()) return st;
  if (req->volume_path().empty()) return grpc_error(StatusCode::INVALID_ARGUMENT, "volume_path is empty");
  Staged s;
  if (Status st = load_staged(req->volume_id(), &s); !st.ok()) return to_grpc(st);
  if (s.device.empty())
    return grpc_error(StatusCode::FAILED_PRECONDITION, "volume " + req->volume_id() + " is not attached");
  if (!s.fs_type.empty() && s.snapshot.empty()) {  // a snapshot reader never grows
    Status st = s.fs_type == "xfs" ? run_checked({"xfs_growfs", s.staging_path}) : run_checked({"resize2fs", s.device});
    if (!st.ok()) return to_grpc(st);
  }
  auto bytes = device_bytes(s.device);
  if (!bytes.ok()) return to_grpc(bytes.status());
  out->set_capacity_bytes(static_cast<int64_t>(*bytes));
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetCapabilities(grpc::ServerContext*, const NodeGetCapabilitiesRequest*,
                                              NodeGetCapabilitiesResponse* out) {
  for (auto t : {NodeServiceCapability::RPC::STAGE_UNSTAGE_VOLUME, NodeServiceCapability::RPC::GET_VOLUME_STATS,
                 NodeServiceCapability::RPC::EXPAND_VOLUME}) {
    out->add_capabilities()->mutable_rpc()->set_type(t);
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetInfo(grpc::ServerContext*, const NodeGetInfoRequest*, NodeGetInfoResponse* out) {
  out->set_node_id(options_.node_id);
  out->set_max_volumes_per_node(options_.max_volumes);
  return grpc::Status::OK;
}

}  // namespace portalbd::csi
