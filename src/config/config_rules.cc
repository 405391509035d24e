#include "src/config/config_rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>

#include "src/config/config.h"

namespace portalbd::config_rules {
namespace {

Status invalid(std::string why) { return Status::InvalidArgument(std::move(why)); }

}  // namespace

Status check_disk_size_gb(uint64_t gb) {
  if (gb < 1) return invalid("must be at least 1");
  if (gb > kMaxDiskSizeGb) return invalid("must be at most 1073741824 (1 EiB)");
  return Status::OK();
}

Status check_storage_url(const std::string& url) {
  if (url.empty()) return Status::OK();
  const auto sep = url.find("://");
  if (sep == std::string::npos) {
    return invalid("storage URL '" + url + "' has no scheme (expected memory://, file:// or s3://)");
  }
  const std::string scheme = url.substr(0, sep);
  const std::string rest = url.substr(sep + 3);
  if (scheme == "memory") {
    if (!rest.empty()) return invalid("memory:// takes nothing after it ('" + url + "'): write memory://");
    return Status::OK();
  }
  if (scheme == "file") {
    if (rest.empty()) return invalid("file:// URL needs a directory, e.g. file:///var/lib/portalbd/data");
    // file://data/x would be relative to the working directory (/ under
    // systemd): say which absolute path was probably meant.
    if (rest[0] != '/') {
      return invalid("file:// URL needs an absolute path: '" + url + "' would be relative to the working directory; " +
                     "write file:///absolute/" + rest);
    }
    return Status::OK();
  }
  if (scheme == "s3") {
    if (rest.empty() || rest[0] == '/') return invalid("s3:// URL needs a bucket, e.g. s3://bucket/prefix");
    return Status::OK();
  }
  return invalid("unsupported storage URL scheme '" + scheme + "' in '" + url +
                 "' (expected memory://, file:// or s3://)");
}

Status check_nbd_address(const std::string& address) {
  if (address.empty()) return Status::OK();
  auto parsed = parse_host_port(address);
  return parsed.ok() ? Status::OK() : parsed.status();
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return ::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

Status check_metrics_address(const std::string& address) {
  if (address.empty()) return Status::OK();
  auto parsed = parse_host_port(address);
  if (!parsed.ok()) return parsed.status();
  if (!is_loopback_host(parsed->host)) {
    return invalid("metrics are served on loopback only (127.0.0.1, [::1] or localhost), not '" + parsed->host +
                   "': the endpoint has no authentication; to scrape from another host, forward a loopback port "
                   "(ssh -L, or a reverse proxy with TLS and authentication)");
  }
  return Status::OK();
}

Status check_unix_socket_path(const std::string& path) {
  if (path.empty()) return Status::OK();
  if (path.size() > kMaxUnixPathBytes) {
    return invalid("unix socket path is " + std::to_string(path.size()) + " bytes, the limit is " +
                   std::to_string(kMaxUnixPathBytes));
  }
  return Status::OK();
}

Status check_export_name(const std::string& name) {
  if (name.empty()) return invalid("must not be empty");
  if (name.size() > kMaxExportNameBytes) return invalid("must be at most 4096 bytes");
  for (unsigned char c : name) {
    // '@' separates the export from a snapshot in "<export>@<snapshot>".
    if (c == '@') return invalid("must not contain '@' (it names snapshots: <export>@<snapshot>)");
    if (c < 0x20 || c > 0x7e) return invalid("must be printable ASCII");
  }
  return Status::OK();
}

Status check_serve_snapshot(const std::string& name) {
  if (name.empty()) return Status::OK();
  if (name.size() > 128) return invalid("a snapshot name is at most 128 characters");
  if (name == "live") return invalid("'live' is the volume itself, not a snapshot");
  for (unsigned char c : name) {
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') {
      return invalid("a snapshot name is made of [A-Za-z0-9._-]");
    }
  }
  return Status::OK();
}

Status check_max_connections(uint64_t n) {
  if (n < 1 || n > kMaxNbdConnections) return invalid("must be between 1 and 65536");
  return Status::OK();
}

Status check_max_write_payload_bytes(uint64_t bytes) {
  if (bytes < kMinWritePayloadBytes || bytes > kMaxWritePayloadBytes) {
    return invalid("must be between 1048576 (1 MiB) and 1099511627776 (1 TiB)");
  }
  return Status::OK();
}

Status check_log_level(const std::string& level) {
  for (const char* known : {"trace", "debug", "info", "warn", "error", "off"}) {
    if (level == known) return Status::OK();
  }
  return invalid("unknown log level (expected trace, debug, info, warn, error or off)");
}

Status check_compression(const std::string& name) {
  if (name == "auto" || name == "lz4" || name == "zstd" || name == "none") return Status::OK();
  return invalid("unknown compression (expected auto, lz4, zstd or none)");
}

Status check_tls_mode(const std::string& mode) {
  if (mode == "off" || mode == "on" || mode == "require") return Status::OK();
  return invalid("unknown TLS mode (expected off, on or require)");
}

Status check_flush_interval_ms(uint64_t ms) {
  if (ms < 1 || ms > kMaxFlushIntervalMs) return invalid("must be between 1 and 3600000 (one hour)");
  return Status::OK();
}

Status check_segment_bytes(uint64_t bytes) {
  if (bytes < kMinSegmentBytes || bytes > kMaxSegmentBytes) {
    return invalid("must be between 1048576 (1 MiB) and 1073741824 (1 GiB)");
  }
  return Status::OK();
}

Status check_journal_bytes(uint64_t bytes) {
  if (bytes < (128ull << 20)) return invalid("must be at least 134217728 (128 MiB): two 64 MiB chunks");
  return Status::OK();
}

Status check_upload_concurrency(uint64_t n) {
  if (n > kMaxUploadConcurrency) return invalid("must be between 0 (automatic) and 16");
  return Status::OK();
}

Status check_fetch_concurrency(uint64_t n) {
  if (n < 1 || n > 256) return invalid("must be between 1 and 256");
  return Status::OK();
}

Status check_control_idle_timeout_ms(uint64_t ms) {
  // 0 would mean "never", which is the lock-out this setting exists to end.
  if (ms < kMinControlIdleTimeoutMs || ms > kMaxControlIdleTimeoutMs) {
    return invalid("must be between 100 and 3600000 (one hour)");
  }
  return Status::OK();
}

Status check_storage_timeout_ms(uint64_t ms) {
  // 0 would mean "no deadline", the hang these keys exist to end.
  if (ms < kMinStorageTimeoutMs || ms > kMaxStorageTimeoutMs) {
    return invalid("must be between 100 and 3600000 (one hour)");
  }
  return Status::OK();
}

Status check_any_uint(uint64_t) { return Status::OK(); }
Status check_any_string(const std::string&) { return Status::OK(); }

Status check_dir_path(const std::string& path) {
  if (!path.empty() && path[0] != '/') return invalid("must be an absolute path");
  return Status::OK();
}

Status check_file_path(const std::string& path) { return check_dir_path(path); }

}  // namespace portalbd::config_rules
