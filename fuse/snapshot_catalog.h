// SnapshotCatalog: the view's idea of which snapshots exist, refreshed from
// the NBD server's export list at most once per `ttl` so that snapshots made
// or deleted after mounting show up without remounting.
//
// Inode numbers: every (name, creation time) pair gets its own inode number,
// never reused, and its record is kept after the snapshot disappears. That way
// an open file of a deleted snapshot still answers getattr, and a new snapshot
// that reuses an old name is a new file, so the kernel never serves the old
// one's cached pages for it (snapshot files are cached with keep_cache).
//
// Thread-safety: every public method is safe from any thread (mu_ guards all
// state). A refresh holds mu_ while it talks to the server, which is bounded
// by `timeout`; concurrent lookups wait for it rather than race it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fuse/export_listing.h"
#include "fuse/nbd_endpoint.h"
#include "src/util/mutex.h"

namespace portalbd::fuse {

struct SnapshotFile {
  uint64_t ino = 0;
  std::string name;            // snapshot name; the file is "<name>.img"
  std::string export_name;     // "<live>@<name>"
  int64_t created_unix_s = 0;  // 0 when the description has no time
  std::string description;
};

// "read-only snapshot 'x' taken 2026-01-02T03:04:05Z" -> 1767323045; 0 if absent.
int64_t parse_taken_time(const std::string& description);

// The snapshots in `listing`: exports named "<live_export>@<name>", where
// <name> is usable as a file name. Inode numbers are left 0.
std::vector<SnapshotFile> snapshots_in(const ExportListing& listing);

class SnapshotCatalog {
 public:
  struct Health {
    bool reachable = false;
    std::string last_error;  // empty after a successful refresh
    int64_t last_ok_unix_s = 0;
  };

  SnapshotCatalog(NbdEndpoint endpoint, std::string live_export, uint64_t first_ino, std::chrono::milliseconds ttl,
                  std::chrono::milliseconds timeout);

  // Seeds the catalog (mount time): fails when the server cannot be reached.
  Status prime() EXCLUDES(mu_);

  // The snapshots that exist now (refreshing if stale), oldest inode first.
  // On a failed refresh the last known list stays (see health()).
  std::vector<SnapshotFile> list() EXCLUDES(mu_);
  std::optional<SnapshotFile> find_name(const std::string& name) EXCLUDES(mu_);
  // Also finds snapshots that have disappeared since (for open files).
  std::optional<SnapshotFile> find_ino(uint64_t ino) EXCLUDES(mu_);

  uint64_t device_size() EXCLUDES(mu_);
  std::string live_export() EXCLUDES(mu_);
  Health health() EXCLUDES(mu_);

  // Applies a listing; public for unit tests.
  void apply(const ExportListing& listing, int64_t now_unix_s) EXCLUDES(mu_);

 private:
  void refresh_if_stale_locked() REQUIRES(mu_);
  void apply_locked(const ExportListing& listing, int64_t now_unix_s) REQUIRES(mu_);

  const NbdEndpoint endpoint_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::milliseconds timeout_;

  Mutex mu_;
  std::string live_export_ GUARDED_BY(mu_);
  uint64_t size_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t next_ino_ GUARDED_BY(mu_);
  std::map<uint64_t, SnapshotFile> by_ino_ GUARDED_BY(mu_);  // every snapshot ever seen
  std::map<std::string, uint64_t> current_ GUARDED_BY(mu_);  // name -> ino of those listed now
  Clock::time_point refreshed_at_ GUARDED_BY(mu_) = {};
  Health health_ GUARDED_BY(mu_);
};

}  // namespace portalbd::fuse
