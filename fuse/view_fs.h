// ViewFs: the file system the FUSE view shows, as libfuse low-level ops.
//
//   /README                 what this is, where it reads from, daemon health
//   /snapshots/<name>.img   every snapshot, read-only, size = device size,
//                           mtime = the snapshot's creation time
//   /live.img               the live volume, read-write (only with --live)
//
// Each open image file gets its own ConnectionPool (connections opened at
// open(), see connection_pool.h) and, for snapshots, a ReadAhead. Snapshot
// files are immutable, so the kernel may keep their pages cached across
// opens (keep_cache); live.img and README bypass the page cache (direct_io)
// because they change under us.
//
// Ownership: ViewFs borrows the catalog. Open files are owned by the kernel's
// file handle (fi->fh holds an OpenFile released in release()).
// Thread-safety: every op may run on any FUSE worker thread concurrently; the
// catalog and the per-file objects do their own locking; ViewFs has no
// mutable state of its own besides them. No C++ exception leaves an op.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "fuse/fuse_api.h"
#include "fuse/nbd_endpoint.h"
#include "fuse/snapshot_catalog.h"

namespace portalbd::fuse {

struct ViewFsOptions {
  NbdEndpoint endpoint;
  std::string mountpoint;  // for README only
  bool live = false;
  int connections = 8;
  std::chrono::milliseconds io_timeout{30000};
  size_t read_ahead_chunk_bytes = 1 << 20;
  size_t read_ahead_window_chunks = 8;
};

// Fixed inode numbers; snapshot files get numbers from kFirstSnapshotIno up.
inline constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
inline constexpr fuse_ino_t kSnapshotsDirIno = 2;
inline constexpr fuse_ino_t kReadmeIno = 3;
inline constexpr fuse_ino_t kLiveIno = 4;
inline constexpr fuse_ino_t kFirstSnapshotIno = 16;

class ViewFs {
 public:
  ViewFs(ViewFsOptions options, SnapshotCatalog* catalog) : options_(std::move(options)), catalog_(catalog) {}

  // The op table; the session's userdata must be a ViewFs*.
  static const fuse_lowlevel_ops& ops();

  // The README text (also used by tests).
  std::string readme();

  // Op handlers, called through ops(). Each replies exactly once.
  void init(fuse_conn_info* conn);
  void lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void getattr(fuse_req_t req, fuse_ino_t ino);
  void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  void releasedir(fuse_req_t req, fuse_file_info* fi);
  void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi);
  void write(fuse_req_t req, const char* buf, size_t size, off_t off, fuse_file_info* fi);
  void fsync(fuse_req_t req, fuse_file_info* fi);
  void fallocate(fuse_req_t req, int mode, off_t off, off_t length, fuse_file_info* fi);
  void lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi);
  void release(fuse_req_t req, fuse_file_info* fi);

 private:
  // false when `ino` does not exist (any more).
  bool attr_of(fuse_ino_t ino, struct stat* st);
  void reply_entry(fuse_req_t req, fuse_ino_t ino);

  const ViewFsOptions options_;
  SnapshotCatalog* const catalog_;
  const std::chrono::system_clock::time_point mounted_at_ = std::chrono::system_clock::now();
};

// Status -> errno, at the FUSE edge only.
int errno_for(const Status& status);

}  // namespace portalbd::fuse
