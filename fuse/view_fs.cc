#include "fuse/view_fs.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <sstream>
#include <vector>

#include "fuse/open_file.h"
#include "fuse/seek_data.h"

namespace portalbd::fuse {
namespace {

// Entries and attributes may be cached this long: the catalog refreshes at
// about the same rate, so a snapshot appears or disappears within ~2 s.
constexpr double kCacheSeconds = 1.0;

ViewFs* self(fuse_req_t req) { return static_cast<ViewFs*>(fuse_req_userdata(req)); }

// Runs an op body; an exception (only possible before the body replied,
// since replying is always its last step) becomes EIO. Exceptions never
// cross into libfuse's C code.
template <typename Body>
void guarded(fuse_req_t req, Body body) {
  try {
    body();
  } catch (...) {
    fuse_reply_err(req, EIO);
  }
}

constexpr const char* kImgSuffix = ".img";

bool strip_img(const std::string& file, std::string* name) {
  const size_t n = std::strlen(kImgSuffix);
  if (file.size() <= n || file.compare(file.size() - n, n, kImgSuffix) != 0) return false;
  *name = file.substr(0, file.size() - n);
  return true;
}

std::string iso_time(int64_t unix_s) {
  if (unix_s == 0) return "never";
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

int errno_for(const Status& status) {
  switch (status.code()) {
    case Status::Code::kOk: return 0;
    case Status::Code::kNotFound: return ENOENT;
    case Status::Code::kReadOnly: return EROFS;
    case Status::Code::kOutOfRange: return ENXIO;
    case Status::Code::kInvalidArgument: return EINVAL;
    case Status::Code::kNoSpace: return ENOSPC;
    case Status::Code::kNotSupported: return EOPNOTSUPP;
    default: return EIO;
  }
}

std::string ViewFs::readme() {
  const auto health = catalog_->health();
  const auto snaps = catalog_->list();
  std::ostringstream o;
  o << "portalbd snapshot view\n\n"
    << "snapshots/<name>.img  every snapshot of the volume as a read-only disk image\n"
    << "                      (losetup -r, mount -o ro,loop, qemu-img, cp, dd).\n"
    << "                      New and deleted snapshots show up within about 2 s.\n";
  if (options_.live) {
    o << "live.img              the live volume, READ-WRITE. Never mount a filesystem from it\n"
      << "                      while the same filesystem is mounted elsewhere (another loop\n"
      << "                      device, nbd-client, another host): that corrupts it.\n";
  } else {
    o << "live.img              not shown; mount with --live for read-write access.\n";
  }
  o << "\nserver:      " << options_.endpoint.describe() << "\n"
    << "export:      " << catalog_->live_export() << "\n"
    << "size_bytes:  " << catalog_->device_size() << "\n"
    << "snapshots:   " << snaps.size() << "\n"
    << "mountpoint:  " << options_.mountpoint << "\n"
    << "connections: " << options_.connections << " per open image\n"
    << "io_timeout:  " << options_.io_timeout.count() << " ms (then EIO)\n"
    << "reachable:   " << (health.reachable ? "yes" : "NO") << " (last good listing " << iso_time(health.last_ok_unix_s)
    << ")\n";
  if (!health.last_error.empty()) o << "last_error:  " << health.last_error << "\n";
  return o.str();
}

bool ViewFs::attr_of(fuse_ino_t ino, struct stat* st) {
  *st = {};
  st->st_ino = ino;
  st->st_uid = getuid();
  st->st_gid = getgid();
  const auto mounted_s = std::chrono::system_clock::to_time_t(mounted_at_);
  st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = mounted_s;
  st->st_blksize = 4096;
  switch (ino) {
    case kRootIno:
      st->st_mode = S_IFDIR | 0555;
      st->st_nlink = 3;
      return true;
    case kSnapshotsDirIno:
      st->st_mode = S_IFDIR | 0555;
      st->st_nlink = 2;
      return true;
    case kReadmeIno:
      st->st_mode = S_IFREG | 0444;
      st->st_nlink = 1;
      st->st_size = static_cast<off_t>(readme().size());
      return true;
    case kLiveIno:
      if (!options_.live) return false;
      st->st_mode = S_IFREG | 0600;
      st->st_nlink = 1;
      st->st_size = static_cast<off_t>(catalog_->device_size());
      return true;
    default: break;
  }
  auto snap = catalog_->find_ino(ino);
  if (!snap) return false;
  st->st_mode = S_IFREG | 0444;
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(catalog_->device_size());
  // st_blocks stays 0: allocation is not known without a block-status scan,
  // and a "sparse-looking" file makes cp and qemu-img ask SEEK_DATA/SEEK_HOLE.
  if (snap->created_unix_s != 0) {
    st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = snap->created_unix_s;
  }
  return true;
}

void ViewFs::reply_entry(fuse_req_t req, fuse_ino_t ino) {
  fuse_entry_param e{};
  if (!attr_of(ino, &e.attr)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  e.ino = ino;
  e.attr_timeout = kCacheSeconds;
  e.entry_timeout = kCacheSeconds;
  fuse_reply_entry(req, &e);
}

void ViewFs::init(fuse_conn_info* conn) {
  // More parallel kernel read-ahead requests keep several connections busy.
  conn->max_background = 32;
  conn->congestion_threshold = 24;
}

void ViewFs::lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const std::string n = name;
  if (parent == kRootIno) {
    if (n == "snapshots") return reply_entry(req, kSnapshotsDirIno);
    if (n == "README") return reply_entry(req, kReadmeIno);
    if (n == "live.img" && options_.live) return reply_entry(req, kLiveIno);
    fuse_reply_err(req, ENOENT);
    return;
  }
  std::string snap_name;
  if (parent != kSnapshotsDirIno || !strip_img(n, &snap_name)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  auto snap = catalog_->find_name(snap_name);
  if (!snap) {
    // A negative entry cached briefly, so that a new snapshot shows up soon.
    fuse_entry_param e{};
    e.entry_timeout = kCacheSeconds;
    fuse_reply_entry(req, &e);
    return;
  }
  reply_entry(req, snap->ino);
}

void ViewFs::getattr(fuse_req_t req, fuse_ino_t ino) {
  struct stat st {};
  if (!attr_of(ino, &st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_reply_attr(req, &st, kCacheSeconds);
}

void ViewFs::opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto listing = std::make_unique<DirListing>();
  auto& e = listing->entries;
  if (ino == kRootIno) {
    e = {{".", kRootIno, S_IFDIR},
         {"..", kRootIno, S_IFDIR},
         {"README", kReadmeIno, S_IFREG},
         {"snapshots", kSnapshotsDirIno, S_IFDIR}};
    if (options_.live) e.push_back({"live.img", kLiveIno, S_IFREG});
  } else if (ino == kSnapshotsDirIno) {
    e = {{".", kSnapshotsDirIno, S_IFDIR}, {"..", kRootIno, S_IFDIR}};
    for (const auto& s : catalog_->list()) e.push_back({s.name + kImgSuffix, s.ino, S_IFREG});
  } else {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fi->fh = to_fh(std::move(listing));
  if (fuse_reply_open(req, fi) != 0) adopt_fh<DirListing>(fi->fh);  // the opener went away
}

void ViewFs::readdir(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
  const DirListing* listing = from_fh<DirListing>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < listing->entries.size(); ++i) {
    const auto& entry = listing->entries[i];
    struct stat st {};
    st.st_ino = entry.ino;
    st.st_mode = entry.type;
    const size_t need =
        fuse_add_direntry(req, buf.data() + used, size - used, entry.name.c_str(), &st, static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ViewFs::releasedir(fuse_req_t req, fuse_file_info* fi) {
  adopt_fh<DirListing>(fi->fh);
  fuse_reply_err(req, 0);
}

void ViewFs::open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const bool wants_write = (fi->flags & O_ACCMODE) != O_RDONLY;
  auto file = std::make_unique<OpenFile>();
  if (ino == kReadmeIno) {
    if (wants_write) return (void)fuse_reply_err(req, EACCES);
    file->kind = OpenFile::Kind::kText;
    file->text = readme();
    fi->direct_io = 1;  // its size changes with the daemon's health
  } else {
    ConnectionPool::Options po;
    po.endpoint = options_.endpoint;
    po.connections = options_.connections;
    po.io_timeout = options_.io_timeout;
    if (ino == kLiveIno && options_.live) {
      file->kind = OpenFile::Kind::kLive;
      po.export_name = catalog_->live_export();
    } else {
      auto snap = catalog_->find_ino(ino);
      if (!snap) return (void)fuse_reply_err(req, ENOENT);
      if (wants_write) return (void)fuse_reply_err(req, EROFS);
      file->kind = OpenFile::Kind::kSnapshot;
      po.export_name = snap->export_name;
    }
    auto pool = ConnectionPool::open(po);
    if (!pool.ok()) return (void)fuse_reply_err(req, errno_for(pool.status()));
    file->pool = std::move(*pool);
    file->size = file->pool->size();
    if (file->kind == OpenFile::Kind::kLive) {
      if (wants_write && file->pool->read_only()) return (void)fuse_reply_err(req, EROFS);
      fi->direct_io = 1;  // other NBD clients may write the live volume
    } else {
      file->read_ahead = std::make_unique<ReadAhead>(file->pool.get(), file->size, options_.read_ahead_chunk_bytes,
                                                     options_.read_ahead_window_chunks);
      fi->keep_cache = 1;  // immutable: a snapshot's file never changes
    }
  }
  fi->fh = to_fh(std::move(file));
  if (fuse_reply_open(req, fi) != 0) adopt_fh<OpenFile>(fi->fh);
}

void ViewFs::read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi) {
  OpenFile* file = from_fh<OpenFile>(fi->fh);
  const uint64_t offset = static_cast<uint64_t>(off);
  if (file->kind == OpenFile::Kind::kText) {
    const size_t start = std::min<size_t>(offset, file->text.size());
    const size_t n = std::min(size, file->text.size() - start);
    fuse_reply_buf(req, file->text.data() + start, n);
    return;
  }
  if (offset >= file->size) return (void)fuse_reply_buf(req, nullptr, 0);
  const size_t n = static_cast<size_t>(std::min<uint64_t>(size, file->size - offset));
  std::vector<char> buf(n);
  Status st = file->read_ahead ? file->read_ahead->read(buf.data(), n, offset)
                               : file->pool->run([&buf, n, offset](NbdConnection& c, Deadline d) {
                                   return c.pread(buf.data(), n, offset, d);
                                 });
  if (!st.ok()) return (void)fuse_reply_err(req, errno_for(st) == ENOENT ? EIO : errno_for(st));
  fuse_reply_buf(req, buf.data(), n);
}

void ViewFs::write(fuse_req_t req, const char* data, size_t size, off_t off, fuse_file_info* fi) {
  OpenFile* file = from_fh<OpenFile>(fi->fh);
  const uint64_t offset = static_cast<uint64_t>(off);
  if (file->kind != OpenFile::Kind::kLive) return (void)fuse_reply_err(req, EROFS);
  if (offset > file->size || size > file->size - offset) return (void)fuse_reply_err(req, ENOSPC);
  Status st =
      file->pool->run([data, size, offset](NbdConnection& c, Deadline d) { return c.pwrite(data, size, offset, d); });
  if (!st.ok()) return (void)fuse_reply_err(req, EIO);
  fuse_reply_write(req, size);
}

void ViewFs::fsync(fuse_req_t req, fuse_file_info* fi) {
  OpenFile* file = from_fh<OpenFile>(fi->fh);
  if (file->kind != OpenFile::Kind::kLive) return (void)fuse_reply_err(req, 0);
  // portalbd advertises multi-conn: a flush on one connection covers writes
  // completed on all of them.
  Status st = file->pool->run([](NbdConnection& c, Deadline d) { return c.flush(d); });
  fuse_reply_err(req, st.ok() ? 0 : EIO);
}

void ViewFs::fallocate(fuse_req_t req, int mode, off_t off, off_t length, fuse_file_info* fi) {
  OpenFile* file = from_fh<OpenFile>(fi->fh);
  if (file->kind != OpenFile::Kind::kLive) return (void)fuse_reply_err(req, EROFS);
  const uint64_t offset = static_cast<uint64_t>(off);
  const uint64_t count = static_cast<uint64_t>(length);
  if (off < 0 || length <= 0 || offset > file->size || count > file->size - offset) {
    return (void)fuse_reply_err(req, EINVAL);
  }
  // Loop devices turn discard into PUNCH_HOLE and write-zeroes into ZERO_RANGE.
  ConnectionPool::Op op;
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    op = [count, offset](NbdConnection& c, Deadline d) { return c.trim(count, offset, d); };
  } else if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
    op = [count, offset](NbdConnection& c, Deadline d) { return c.zero(count, offset, d); };
  } else if (mode == 0 || mode == FALLOC_FL_KEEP_SIZE) {
    return (void)fuse_reply_err(req, 0);  // a block device is always fully "allocated"
  } else {
    return (void)fuse_reply_err(req, EOPNOTSUPP);
  }
  Status st = file->pool->run(std::move(op));
  fuse_reply_err(req, st.ok() ? 0 : EIO);
}

void ViewFs::lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi) {
  OpenFile* file = from_fh<OpenFile>(fi->fh);
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  if (file->kind == OpenFile::Kind::kText || off < 0) return (void)fuse_reply_err(req, EINVAL);
  ConnectionPool* pool = file->pool.get();
  auto pos = seek_data_or_hole(file->size, static_cast<uint64_t>(off), whence == SEEK_DATA,
                               [pool](uint64_t offset, uint64_t count, std::vector<Extent>* out) {
                                 return pool->run([offset, count, out](NbdConnection& c, Deadline d) {
                                   return c.block_status(count, offset, out, d);
                                 });
                               });
  if (!pos.ok()) return (void)fuse_reply_err(req, pos.status().is(Status::Code::kOutOfRange) ? ENXIO : EIO);
  fuse_reply_lseek(req, static_cast<off_t>(*pos));
}

void ViewFs::release(fuse_req_t req, fuse_file_info* fi) {
  adopt_fh<OpenFile>(fi->fh);  // closes the file's connections
  fuse_reply_err(req, 0);
}

namespace {

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops o{};
  o.init = [](void* userdata, fuse_conn_info* conn) {
    try {
      static_cast<ViewFs*>(userdata)->init(conn);
    } catch (...) {
    }
  };
  o.lookup = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, [&] { self(req)->lookup(req, parent, name); });
  };
  o.getattr = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    guarded(req, [&] { self(req)->getattr(req, ino); });
  };
  o.opendir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->opendir(req, ino, fi); });
  };
  o.readdir = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->readdir(req, ino, size, off, fi); });
  };
  o.releasedir = [](fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->releasedir(req, fi); });
  };
  o.open = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->open(req, ino, fi); });
  };
  o.read = [](fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->read(req, size, off, fi); });
  };
  o.write = [](fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->write(req, buf, size, off, fi); });
  };
  o.fsync = [](fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->fsync(req, fi); });
  };
  o.fallocate = [](fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t length, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->fallocate(req, mode, off, length, fi); });
  };
  o.lseek = [](fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->lseek(req, off, whence, fi); });
  };
  o.release = [](fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    guarded(req, [&] { self(req)->release(req, fi); });
  };
  return o;
}

}  // namespace

const fuse_lowlevel_ops& ViewFs::ops() {
  static const fuse_lowlevel_ops table = make_ops();
  return table;
}

}  // namespace portalbd::fuse
