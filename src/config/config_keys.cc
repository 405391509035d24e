#include "src/config/config_keys.h"

#include <algorithm>
#include <array>
#include <vector>

#include "src/config/config_rules.h"

namespace portalbd {
namespace {

using T = ConfigKey::Type;
namespace r = config_rules;

ConfigKey uint_key(const char* name, uint64_t Config::*field, Status (*check)(uint64_t), const char* help) {
  ConfigKey k{name, T::kUint};
  k.uint_field = field;
  k.check_uint = check;
  k.help = help;
  return k;
}

ConfigKey string_key(const char* name, std::string Config::*field, Status (*check)(const std::string&),
                     const char* help) {
  ConfigKey k{name, T::kString};
  k.string_field = field;
  k.check_string = check;
  k.help = help;
  return k;
}

ConfigKey bool_key(const char* name, bool Config::*field, const char* help) {
  ConfigKey k{name, T::kBool};
  k.bool_field = field;
  k.help = help;
  return k;
}

std::vector<ConfigKey> build_table() {
  std::vector<ConfigKey> keys;
  ConfigKey size = uint_key("device.disk_size_gb", &Config::disk_size_gb, r::check_disk_size_gb,
                            "device size in GiB (new volume: default 1; existing: kept)");
  size.set_marker = &Config::disk_size_set;
  keys.push_back(size);
  keys.push_back(bool_key("device.grow", &Config::grow, "allow growing an existing volume (never shrinks)"));
  keys.push_back(string_key("storage.url", &Config::storage_url, r::check_storage_url,
                            "memory://, file:///dir or s3://bucket/prefix (default file://<state_dir>/data)"));
  keys.push_back(string_key("storage.endpoint", &Config::s3_endpoint, r::check_any_string,
                            "S3 endpoint URL, e.g. http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL_S3, "
                            "AWS_ENDPOINT_URL, endpoint_url of the profile in ~/.aws/config, or AWS)"));
  keys.push_back(string_key("storage.region", &Config::s3_region, r::check_any_string,
                            "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, region of the profile in "
                            "~/.aws/config or AWS_CONFIG_FILE, else us-east-1)"));
  keys.push_back(string_key("storage.profile", &Config::s3_profile, r::check_any_string,
                            "profile in the shared credentials and config files (default: AWS_PROFILE or default)"));
  keys.push_back(string_key("storage.credentials_file", &Config::s3_credentials_file, r::check_any_string,
                            "shared credentials file (default: AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials)"));
  keys.push_back(uint_key("storage.connect_timeout_ms", &Config::s3_connect_timeout_ms, r::check_storage_timeout_ms,
                          "S3: an attempt that cannot connect within this long fails and is retried"));
  keys.push_back(uint_key("storage.stall_timeout_ms", &Config::s3_stall_timeout_ms, r::check_storage_timeout_ms,
                          "S3: an attempt that moves no data for this long (a hung store, no first byte) fails "
                          "and is retried"));
  keys.push_back(uint_key("storage.request_timeout_ms", &Config::s3_request_timeout_ms, r::check_storage_timeout_ms,
                          "S3: one attempt's limit, plus 1 s per MiB of body; a request with its retries gives "
                          "up after lsm.flush_timeout_ms"));
  keys.push_back(bool_key("storage.repair", &Config::repair,
                          "open a volume whose storage is damaged, accepting the loss: unreadable objects move "
                          "under quarantine/ and the log says what is lost (default: refuse to open it)"));
  keys.push_back(string_key("nbd.address", &Config::nbd_address, r::check_nbd_address,
                            "NBD TCP listen address host:port, \"\" disables TCP"));
  keys.push_back(string_key("nbd.socket", &Config::control_socket, r::check_unix_socket_path,
                            "control socket path used by portalctl"));
  keys.push_back(string_key("nbd.socket_group", &Config::control_socket_group, r::check_any_string,
                            "a group whose members may use portalctl: the control socket gets that group and "
                            "mode 0660 (\"\": the daemon's user only, 0600)"));
  keys.push_back(
      string_key("nbd.unix", &Config::nbd_unix, r::check_unix_socket_path, "NBD unix socket path, \"\" for none"));
  keys.push_back(string_key("nbd.export_name", &Config::export_name, r::check_export_name,
                            "NBD export name; snapshots are <export>@<snapshot>"));
  keys.push_back(string_key("nbd.serve_snapshot", &Config::serve_snapshot, r::check_serve_snapshot,
                            "serve this snapshot of the volume read-only, without the writer lease and writing "
                            "nothing to storage, beside the volume's writer; \"\": serve the volume itself"));
  keys.push_back(string_key("nbd.trace_file", &Config::trace_file, r::check_file_path,
                            "record every NBD request (no data) to this file, \"\" for none"));
  keys.push_back(uint_key("nbd.max_connections", &Config::max_connections, r::check_max_connections,
                          "most NBD clients connected at once; one more is refused and logged"));
  keys.push_back(uint_key("nbd.max_write_payload_bytes", &Config::max_write_payload_bytes,
                          r::check_max_write_payload_bytes,
                          "WRITE data held in memory across all connections before readers wait"));
  keys.push_back(string_key("nbd.tls", &Config::tls, r::check_tls_mode,
                            "NBD over TLS: off, on (clients may use it) or require (no export in the clear)"));
  keys.push_back(string_key("nbd.tls_certificates", &Config::tls_certificates, r::check_dir_path,
                            "directory holding ca-cert.pem, server-cert.pem and server-key.pem (as for nbdkit "
                            "and qemu-nbd)"));
  keys.push_back(bool_key("nbd.tls_verify_peer", &Config::tls_verify_peer,
                          "TLS clients must present a certificate signed by ca-cert.pem"));
  keys.push_back(string_key("nbd.tls_psk", &Config::tls_psk_file, r::check_file_path,
                            "TLS pre-shared keys file, identity:hexkey lines (psktool's format)"));
  keys.push_back(uint_key("lsm.flush_interval_ms", &Config::flush_interval_ms, r::check_flush_interval_ms,
                          "upload buffered writes at least this often"));
  keys.push_back(uint_key("lsm.l0_sst_size_bytes", &Config::segment_bytes, r::check_segment_bytes,
                          "target size of one segment object"));
  keys.push_back(uint_key("lsm.write_buffer_bytes", &Config::write_buffer_bytes, r::check_any_uint,
                          "dirty bytes held in memory before writers wait"));
  keys.push_back(uint_key("lsm.flush_timeout_ms", &Config::flush_timeout_ms, r::check_any_uint,
                          "while storage fails, FLUSH retries this long before EIO (0: EIO at once)"));
  keys.push_back(uint_key("lsm.upload_concurrency", &Config::upload_concurrency, r::check_upload_concurrency,
                          "segments encoded and uploaded at once, 1-16 (0: automatic, 4 on s3://, 1 on local stores)"));
  keys.push_back(
      uint_key("cache.bytes", &Config::cache_bytes, r::check_any_uint, "decoded-frame read cache size, 0 disables it"));
  ConfigKey disk_cache = uint_key("cache.disk_bytes", &Config::disk_cache_bytes, r::check_any_uint,
                                  "s3:// only: local disk cache of fetched frames, kept across restarts (default "
                                  "10% of the state dir's filesystem, at most 64 GiB; 0 disables it)");
  disk_cache.set_marker = &Config::disk_cache_bytes_set;
  keys.push_back(disk_cache);
  keys.push_back(string_key("cache.disk_dir", &Config::disk_cache_dir, r::check_dir_path,
                            "disk cache directory (default <state_dir>/cache); keep it on a local disk"));
  keys.push_back(uint_key("cache.fetch_concurrency", &Config::fetch_concurrency, r::check_fetch_concurrency,
                          "frames fetched from storage (GETs) or the disk cache at once, 1-256"));
  ConfigKey read_ahead = uint_key("cache.read_ahead_bytes", &Config::read_ahead_bytes, r::check_any_uint,
                                  "how far ahead of a sequential reader frames are fetched (default 256 MiB on "
                                  "s3://, 64 MiB on local stores), 0 disables read-ahead");
  read_ahead.set_marker = &Config::read_ahead_bytes_set;
  keys.push_back(read_ahead);
  keys.push_back(uint_key("cache.index_bytes", &Config::index_bytes, r::check_any_uint,
                          "memory for the extents of the index: it stays on disk and reads keep the parts they "
                          "used last in memory, up to about this many bytes; 0: no limit"));
  keys.push_back(uint_key("cache.flatten_depth", &Config::flatten_depth, r::check_any_uint,
                          "with this many snapshots or more under the live volume, reads use a flattened "
                          "map of them instead of walking each (memory: one more entry per extent); 0: never"));
  keys.push_back(string_key("metrics.address", &Config::metrics_address, r::check_metrics_address,
                            "serve Prometheus metrics (GET /metrics) on this loopback host:port, \"\" (default) "
                            "for none"));
  keys.push_back(string_key("encryption.key_file", &Config::encryption_key_file, r::check_file_path,
                            "encrypt every stored object with this key: a file of exactly 32 random bytes; "
                            "losing it loses the volume"));
  keys.push_back(string_key("encryption.passphrase_file", &Config::encryption_passphrase_file, r::check_file_path,
                            "encrypt with a key derived (scrypt) from the passphrase in this file, instead of "
                            "key_file"));
  keys.push_back(string_key("fuse.mountpoint", &Config::fuse_mountpoint, r::check_any_string,
                            "mount the FUSE snapshot view here at start, unmount it at stop"));
  keys.push_back(uint_key("gc.interval_s", &Config::gc_interval_s, r::check_any_uint,
                          "background garbage collection every N seconds, 0 turns it off"));
  ConfigKey journal =
      bool_key("journal.enabled", &Config::journal_enabled,
               "write-ahead journal on local disk: FLUSH returns after one fdatasync, uploads run "
               "behind (default: on for file://, off for s3:// where FLUSH waits for the object store; never on "
               "memory://)");
  journal.set_marker = &Config::journal_enabled_set;
  keys.push_back(journal);
  keys.push_back(string_key("journal.dir", &Config::journal_dir, r::check_dir_path,
                            "journal directory (default <state_dir>/journal); keep it on a local disk"));
  keys.push_back(uint_key("journal.bytes", &Config::journal_bytes, r::check_journal_bytes,
                          "journal capacity; writers wait while it is full of writes not yet uploaded"));
  ConfigKey direct = uint_key("journal.direct_write_bytes", &Config::journal_direct_write_bytes, r::check_any_uint,
                              "writes of at least this many bytes go to storage without the journal, and a FLUSH "
                              "after one waits for its upload (default 1 MiB on file://, where they would be "
                              "written twice to one disk; 0, journal all, on s3://)");
  direct.set_marker = &Config::journal_direct_write_bytes_set;
  keys.push_back(direct);
  keys.push_back(uint_key("journal.max_lag_ms", &Config::journal_max_lag_ms, r::check_any_uint,
                          "writers wait once the oldest write not yet uploaded is this old (what losing the "
                          "local disk can cost, in time)"));
  keys.push_back(uint_key("gc.grace_ms", &Config::gc_grace_ms, r::check_any_uint,
                          "delete unreferenced segments this long after GC finds them"));
  keys.push_back(string_key("daemon.state_dir", &Config::state_dir, r::check_dir_path,
                            "index and local data directory (absolute path)"));
  keys.push_back(
      string_key("daemon.log_level", &Config::log_level, r::check_log_level, "trace, debug, info, warn, error or off"));
  keys.push_back(string_key("daemon.compression", &Config::compression, r::check_compression,
                            "segment compression: auto (lz4, none on memory://), lz4, zstd or none"));
  keys.push_back(uint_key("daemon.control_idle_timeout_ms", &Config::control_idle_timeout_ms,
                          r::check_control_idle_timeout_ms,
                          "close a control connection that sends no request for this long"));
  return keys;
}

// Levenshtein distance, enough to catch "flush_intervall_ms".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::span<const ConfigKey> config_keys() {
  static const std::vector<ConfigKey> table = build_table();
  return table;
}

const ConfigKey* find_config_key(const std::string& name) {
  for (const ConfigKey& k : config_keys()) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

std::string suggest_config_key(const std::string& name) {
  std::string best;
  size_t best_distance = 3;  // farther than this is a different word, not a typo
  for (const ConfigKey& k : config_keys()) {
    size_t d = edit_distance(name, k.name);
    if (d < best_distance) {
      best_distance = d;
      best = k.name;
    }
  }
  return best;
}

std::string config_value_text(const ConfigKey& key, const Config& cfg) {
  switch (key.type) {
    case T::kUint: return std::to_string(cfg.*key.uint_field);
    case T::kBool: return cfg.*key.bool_field ? "true" : "false";
    case T::kString: return quote_config_string(cfg.*key.string_field);
  }
  return "";
}

std::string quote_config_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

Status check_config_key(const ConfigKey& key, const Config& cfg) {
  if (key.check_uint != nullptr) return key.check_uint(cfg.*key.uint_field);
  if (key.check_string != nullptr) return key.check_string(cfg.*key.string_field);
  return Status::OK();
}

}  // namespace portalbd
