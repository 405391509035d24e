// The rule for each configuration value, shared by the TOML loader, the
// command line and validate_config() so that every source gets the same
// verdict. A rule returns OK or InvalidArgument whose message is the bare
// reason ("must be at least 1"); callers prefix where the value came from.
//
// Internal to src/config. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "src/util/status.h"

namespace portalbd::config_rules {

inline constexpr uint64_t kMaxDiskSizeGb = 1ull << 30;  // 1 EiB: NBD sizes are 64-bit bytes
inline constexpr uint64_t kMaxFlushIntervalMs = 3'600'000;
inline constexpr uint64_t kMinControlIdleTimeoutMs = 100;
inline constexpr uint64_t kMaxControlIdleTimeoutMs = 3'600'000;
inline constexpr uint64_t kMinStorageTimeoutMs = 100;
inline constexpr uint64_t kMaxStorageTimeoutMs = 3'600'000;
inline constexpr uint64_t kMinSegmentBytes = 1ull << 20;
inline constexpr uint64_t kMaxSegmentBytes = 1ull << 30;
// The engine's kMaxUploadWindow (src/engine/volume.h): replay tolerates torn
// segments only that far back, so no daemon may upload more at once.
inline constexpr uint64_t kMaxUploadConcurrency = 16;
inline constexpr size_t kMaxExportNameBytes = 4096;  // NBD protocol limit on names
// Each NBD connection is a reader and a few worker threads.
inline constexpr uint64_t kMaxNbdConnections = 65536;
inline constexpr uint64_t kMinWritePayloadBytes = 1ull << 20;
inline constexpr uint64_t kMaxWritePayloadBytes = 1ull << 40;
// sockaddr_un::sun_path holds 108 bytes including the terminating NUL.
inline constexpr size_t kMaxUnixPathBytes = 107;

Status check_disk_size_gb(uint64_t gb);
Status check_storage_url(const std::string& url);      // "" = the default, accepted
Status check_nbd_address(const std::string& address);  // "" = TCP off, accepted
// "" = metrics off, accepted; else host:port with a loopback host
// (localhost, 127.0.0.0/8, ::1): the endpoint has no authentication.
Status check_metrics_address(const std::string& address);
// True for "localhost", an IPv4 address in 127.0.0.0/8 and "::1".
bool is_loopback_host(const std::string& host);
Status check_unix_socket_path(const std::string& path);  // "" accepted
Status check_export_name(const std::string& name);
// "" or a snapshot name: 1-128 of [A-Za-z0-9._-], not "live" (the engine
// checks it again when it opens the snapshot).
Status check_serve_snapshot(const std::string& name);
Status check_max_connections(uint64_t n);
Status check_max_write_payload_bytes(uint64_t bytes);
Status check_log_level(const std::string& level);
Status check_compression(const std::string& name);
Status check_tls_mode(const std::string& mode);  // off | on | require
Status check_flush_interval_ms(uint64_t ms);
Status check_segment_bytes(uint64_t bytes);
Status check_upload_concurrency(uint64_t n);
Status check_fetch_concurrency(uint64_t n);
Status check_journal_bytes(uint64_t bytes);
Status check_control_idle_timeout_ms(uint64_t ms);
Status check_storage_timeout_ms(uint64_t ms);     // [storage] *_timeout_ms
Status check_any_uint(uint64_t);                  // every value accepted
Status check_any_string(const std::string&);      // every value accepted
Status check_dir_path(const std::string& path);   // "" or absolute
Status check_file_path(const std::string& path);  // "" or absolute

}  // namespace portalbd::config_rules
