// The daemon's configuration: one plain struct, its per-user defaults, the
// TOML file loader and the validator.
//
// Precedence (applied by src/config/cli.h): defaults <- config file <- flags.
// Keys follow the seed's file format ([device], [storage], [nbd], [lsm]) plus
// our own [cache] and [daemon] tables; every key is listed in config_keys.h.
//
// Error messages name where the bad value came from, so a user can fix it
// without reading code: "/etc/x.toml: device.disk_size_gb = 0: must be at
// least 1".
//
// Ownership: values. Thread-safety: a Config is a value; the functions here
// touch no shared state (default_config() only reads the environment).
#pragma once

#include <cstdint>
#include <string>

#include "src/util/status.h"

namespace portalbd {

struct Config {
  // [device]
  uint64_t disk_size_gb = 0;  // 0 / unset: keep the existing volume's size; new volumes get 1 GiB
  bool disk_size_set = false;
  bool grow = false;       // allow a larger size than the existing volume (never shrink)
  bool take_over = false;  // --take-over: break another daemon's claim on the volume (flag only)
  // [storage]
  std::string storage_url;          // empty: file://<state_dir>/data, see effective_storage_url()
  std::string s3_endpoint;          // [storage] endpoint (else AWS_ENDPOINT_URL)
  std::string s3_region;            // [storage] region (else AWS_REGION / AWS_DEFAULT_REGION / ~/.aws/config)
  std::string s3_profile;           // [storage] profile (else AWS_PROFILE)
  std::string s3_credentials_file;  // [storage] credentials_file (else AWS_SHARED_CREDENTIALS_FILE)
  // [storage] deadlines of one S3 request (src/store/s3/s3_options.h): connect,
  // stall (no byte moves, the first byte of the answer included), and the
  // whole request (plus 1 s per MiB of body). A call with its retries gives up
  // after [lsm] flush_timeout_ms.
  uint64_t s3_connect_timeout_ms = 5000;
  uint64_t s3_stall_timeout_ms = 15000;
  uint64_t s3_request_timeout_ms = 30000;
  // [storage] repair / --repair: open a volume whose storage is damaged,
  // accepting the loss (VolumeOptions::repair); without it such a volume is
  // refused, naming what is damaged.
  bool repair = false;
  // [nbd]
  std::string nbd_address = "127.0.0.1:10809";  // "host:port"; "" disables TCP
  std::string nbd_unix;                         // NBD unix socket path, "" = none
  std::string control_socket;                   // [nbd] socket (the seed's name for it)
  std::string control_socket_group;             // [nbd] socket_group: that group may use it (0660); "" = 0600
  std::string export_name = "portalbd";
  // [nbd] serve_snapshot / --serve-snapshot: serve this one snapshot of the
  // volume read-only, without the writer lease and without writing to
  // storage, beside the volume's writer (src/engine/snapshot_reader.h);
  // "" = serve the volume itself, as its one writer.
  std::string serve_snapshot;
  std::string trace_file;                           // record every NBD request answered here (nbd/trace.h), "" = off
  uint64_t max_connections = 128;                   // NBD clients at once; one more is refused and logged
  uint64_t max_write_payload_bytes = 256ull << 20;  // WRITE data held in memory, all connections together
  // [nbd] TLS (nbd/tls.h): off | on (clients choose) | require; the
  // credentials: a directory of ca-cert.pem, server-cert.pem, server-key.pem,
  // and/or a PSK file of identity:hexkey lines.
  std::string tls = "off";
  std::string tls_certificates;
  bool tls_verify_peer = false;  // client certificates must chain to ca-cert.pem
  std::string tls_psk_file;
  // [lsm]
  uint64_t flush_interval_ms = 1000;
  uint64_t segment_bytes = 64ull << 20;        // [lsm] l0_sst_size_bytes: target size of one segment object
  uint64_t write_buffer_bytes = 256ull << 20;  // max dirty bytes before writers wait
  uint64_t flush_timeout_ms = 60000;           // FLUSH / a waiting writer gives up after storage stalls this long
  // Segments encoded and PUT at once (1..kMaxUploadConcurrency); 0: automatic,
  // kRemoteUploadConcurrency on s3://, 1 on local stores (effective_upload_concurrency).
  uint64_t upload_concurrency = 0;
  // [cache]
  uint64_t cache_bytes = 256ull << 20;  // decoded-frame read cache; 0 disables it
  // [cache] disk_bytes / disk_dir: the local disk cache of fetched frames
  // (src/engine/disk_frame_cache.h), s3:// only. Unset: effective_disk_cache_bytes().
  uint64_t disk_cache_bytes = 0;
  bool disk_cache_bytes_set = false;
  std::string disk_cache_dir;  // "" = <state_dir>/cache
  // [cache] fetch_concurrency / read_ahead_bytes: frames fetched at once, and
  // how far a sequential reader is read ahead (src/engine/frame_fetcher.h,
  // stream_detector.h). Unset: effective_read_ahead_bytes().
  uint64_t fetch_concurrency = 32;
  uint64_t read_ahead_bytes = 64ull << 20;
  bool read_ahead_bytes_set = false;
  // [cache] index_bytes: the extents of the index kept in memory, at most
  // about this many bytes (src/engine/layer_set.h); 0: no limit.
  uint64_t index_bytes = 64ull << 20;
  // [cache] flatten_depth: chains of at least this many frozen layers get a
  // flattened base (src/engine/layer_set.h); 0: never.
  uint64_t flatten_depth = 16;

  // [journal]: the local write-ahead journal (src/engine/journal.h). Its
  // default depends on the store: effective_journal_enabled().
  bool journal_enabled = false;
  bool journal_enabled_set = false;
  std::string journal_dir;              // "" = <state_dir>/journal
  uint64_t journal_bytes = 1ull << 30;  // capacity
  uint64_t journal_max_lag_ms = 10000;  // writers wait once the oldest unuploaded write is this old
  // Writes this large skip the journal (0: none do). Unset:
  // effective_journal_direct_write_bytes().
  uint64_t journal_direct_write_bytes = 0;
  bool journal_direct_write_bytes_set = false;
  // [encryption] (src/store/volume_encryption.h): at most one of the two;
  // neither means the volume is not encrypted.
  std::string encryption_key_file;         // exactly 32 raw bytes
  std::string encryption_passphrase_file;  // a passphrase, stretched with scrypt
  // [metrics]
  std::string metrics_address;  // Prometheus GET /metrics on this loopback host:port ("" = off)
  // [fuse]
  std::string fuse_mountpoint;  // mount the snapshot view here at start ("" = don't)
  // [gc]
  uint64_t gc_interval_s = 600;  // background garbage collection pass every N seconds; 0 disables
  uint64_t gc_grace_ms = 60000;  // an unreferenced segment is deleted this long after GC finds it
  // [daemon]
  std::string state_dir;
  std::string log_level = "info";    // trace | debug | info | warn | error | off
  std::string compression = "auto";  // auto | lz4 | zstd | none (effective_compression)
  // A control connection that sends no request for this long is closed, so
  // idle clients cannot hold every connection and lock portalctl out.
  uint64_t control_idle_timeout_ms = 10000;
  std::string config_file;  // the file that was loaded, if any
};

// What default_config() reads from the process: kept apart so tests can
// pass any user without touching the real environment.
struct UserEnvironment {
  unsigned uid = 0;
  std::string home;             // $HOME, or the passwd entry's home directory
  std::string xdg_runtime_dir;  // $XDG_RUNTIME_DIR, "" when unset
  std::string xdg_data_home;    // $XDG_DATA_HOME, "" when unset

  static UserEnvironment current();
};

// Defaults for `env`'s user. Root gets system paths (/run/portalbd/portalbd.sock,
// /var/lib/portalbd); anyone else gets per-user paths ($XDG_RUNTIME_DIR/portalbd/
// portalbd.sock or /tmp/portalbd-$UID/portalbd.sock; $XDG_DATA_HOME/portalbd or
// ~/.local/share/portalbd). Relative XDG values are ignored, as the XDG spec asks.
Config default_config(const UserEnvironment& env);
Config default_config();  // for UserEnvironment::current()

// Applies the TOML file at `path` on top of `*cfg`; keys absent from the file
// keep their value. On error `*cfg` may be partly updated: callers stop.
// Errors (InvalidArgument, or IOError when unreadable) name the file, and the
// key and value or line and column.
Status apply_config_file(const std::string& path, Config* cfg);

// Checks every field and the rules between fields. The message names the
// config key: "nbd.address = \"x\": expected host:port".
Status validate_config(const Config& cfg);

// The storage URL the daemon opens: cfg.storage_url, or file://<state_dir>/data.
std::string effective_storage_url(const Config& cfg);

// Uploads at once on a remote store when [lsm] upload_concurrency is 0: a PUT
// there waits on the network far longer than on the CPU, and a window of
// several keeps the link busy. Crash states stay a prefix of the writes
// either way (SegmentFooter::after_seq).
inline constexpr uint64_t kRemoteUploadConcurrency = 4;
// cfg.upload_concurrency, or for 0 the automatic choice for `storage_url`.
uint64_t effective_upload_concurrency(const Config& cfg, const std::string& storage_url);
// Whether writes go through the local journal: [journal] enabled or
// --journal on. Off by default (FLUSH durable in the object store, the
// seed's semantics), and never on memory:// (nothing to journal).
bool effective_journal_enabled(const Config& cfg, const std::string& storage_url);
// cfg.compression, or for "auto": "none" on memory:// (RAM that dies with the
// process, where raw frames are read in place with no decode: the speed of
// nbdkit's memory plugin matters more than the RAM lz4 would save), "lz4"
// everywhere else.
std::string effective_compression(const Config& cfg, const std::string& storage_url);
// The disk cache's size: 0 (none) unless the store is s3:// (file:// is local
// disk already, memory:// is memory); there [cache] disk_bytes, or when unset
// 10% of the filesystem holding the state dir (or its nearest existing
// parent), at most kMaxDefaultDiskCacheBytes.
inline constexpr uint64_t kMaxDefaultDiskCacheBytes = 64ull << 30;
uint64_t effective_disk_cache_bytes(const Config& cfg, const std::string& storage_url);
// [journal] direct_write_bytes unless set: 1 MiB on file:// (a large write
// would go twice to the one local disk), 0 elsewhere (on s3:// a FLUSH after a
// large write would wait for the remote store, which the journal is there to
// avoid; the local disk is not the store).
uint64_t effective_journal_direct_write_bytes(const Config& cfg, const std::string& storage_url);
// [cache] read_ahead_bytes unless set: kRemoteReadAheadBytes on s3://, where
// every GET waits 25 ms or more for its first byte and only many at once fill
// the link (docs/performance.md, "a 256 MiB read-ahead window on s3://"); 64
// MiB (the key's default) on local stores. The memory read-ahead may hold
// stays twice the window, at most 256 MiB, either way.
inline constexpr uint64_t kRemoteReadAheadBytes = 256ull << 20;
uint64_t effective_read_ahead_bytes(const Config& cfg, const std::string& storage_url);
// [cache] disk_dir, or <state_dir>/cache.
std::string effective_disk_cache_dir(const Config& cfg);

// A parsed "host:port" or "[v6addr]:port".
struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
};
// Parses an NBD listen address; InvalidArgument says what is wrong.
Result<HostPort> parse_host_port(const std::string& address);

}  // namespace portalbd
