// default_config() and UserEnvironment: where a daemon keeps its files when
// nobody says otherwise. Root gets the system paths a packaged service uses;
// other users get per-user paths so `portalbd` works without sudo.
#include <pwd.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "src/config/config.h"

namespace portalbd {
namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// XDG: "If an implementation encounters a relative path in any of these
// variables it should consider the path invalid and ignore it."
bool usable_xdg(const std::string& path) { return !path.empty() && path[0] == '/'; }

std::string passwd_home(uid_t uid) {
  std::vector<char> buf(16384);
  struct passwd pw {};
  struct passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return "";
  return found->pw_dir == nullptr ? "" : found->pw_dir;
}

}  // namespace

UserEnvironment UserEnvironment::current() {
  UserEnvironment env;
  env.uid = static_cast<unsigned>(geteuid());
  env.home = env_or_empty("HOME");
  if (env.home.empty()) env.home = passwd_home(geteuid());
  env.xdg_runtime_dir = env_or_empty("XDG_RUNTIME_DIR");
  env.xdg_data_home = env_or_empty("XDG_DATA_HOME");
  return env;
}

Config default_config(const UserEnvironment& env) {
  Config cfg;
  if (env.uid == 0) {
    cfg.control_socket = "/run/portalbd/portalbd.sock";
    cfg.state_dir = "/var/lib/portalbd";
    return cfg;
  }
  cfg.control_socket = usable_xdg(env.xdg_runtime_dir) ? env.xdg_runtime_dir + "/portalbd/portalbd.sock"
                                                       : "/tmp/portalbd-" + std::to_string(env.uid) + "/portalbd.sock";
  if (usable_xdg(env.xdg_data_home)) {
    cfg.state_dir = env.xdg_data_home + "/portalbd";
  } else if (!env.home.empty()) {
    cfg.state_dir = env.home + "/.local/share/portalbd";
  } else {
    // No home at all (a bare service account): keep data beside the socket's
    // fallback rather than in the working directory.
    cfg.state_dir = "/tmp/portalbd-" + std::to_string(env.uid) + "/state";
  }
  return cfg;
}

Config default_config() { return default_config(UserEnvironment::current()); }

std::string effective_storage_url(const Config& cfg) {
  if (!cfg.storage_url.empty()) return cfg.storage_url;
  return "file://" + cfg.state_dir + "/data";
}

std::string effective_compression(const Config& cfg, const std::string& storage_url) {
  if (cfg.compression != "auto") return cfg.compression;
  return storage_url.rfind("memory://", 0) == 0 ? "none" : "lz4";
}

bool effective_journal_enabled(const Config& cfg, const std::string& storage_url) {
  if (storage_url.rfind("memory://", 0) == 0) return false;
  if (cfg.journal_enabled_set) return cfg.journal_enabled;
  // On file:// the local disk is the store anyway: one fdatasync of the
  // journal per FLUSH instead of a segment file, with the same disk to lose.
  // On s3:// FLUSH means "in the object store" (the seed's semantics) unless
  // the operator accepts the journal's trade (README, "Durability").
  return storage_url.rfind("file://", 0) == 0;
}

uint64_t effective_journal_direct_write_bytes(const Config& cfg, const std::string& storage_url) {
  if (cfg.journal_direct_write_bytes_set) return cfg.journal_direct_write_bytes;
  return storage_url.rfind("file://", 0) == 0 ? 1ull << 20 : 0;
}

uint64_t effective_upload_concurrency(const Config& cfg, const std::string& storage_url) {
  if (cfg.upload_concurrency != 0) return cfg.upload_concurrency;
  return storage_url.rfind("s3://", 0) == 0 ? kRemoteUploadConcurrency : 1;
}

uint64_t effective_disk_cache_bytes(const Config& cfg, const std::string& storage_url) {
  if (storage_url.rfind("s3://", 0) != 0) return 0;
  if (cfg.disk_cache_bytes_set) return cfg.disk_cache_bytes;
  // The state dir may not exist yet (a first start): its nearest parent's filesystem.
  std::filesystem::path dir = cfg.state_dir.empty() ? "/" : cfg.state_dir;
  std::error_code ec;
  while (!std::filesystem::exists(dir, ec) && dir.has_parent_path() && dir != dir.parent_path()) {
    dir = dir.parent_path();
  }
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return 0;
  const uint64_t total = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  return std::min(total / 10, kMaxDefaultDiskCacheBytes);
}

uint64_t effective_read_ahead_bytes(const Config& cfg, const std::string& storage_url) {
  if (cfg.read_ahead_bytes_set) return cfg.read_ahead_bytes;
  return storage_url.rfind("s3://", 0) == 0 ? kRemoteReadAheadBytes : cfg.read_ahead_bytes;
}

std::string effective_disk_cache_dir(const Config& cfg) {
  return cfg.disk_cache_dir.empty() ? cfg.state_dir + "/cache" : cfg.disk_cache_dir;
}

}  // namespace portalbd
