// OpenFile and DirListing: what the FUSE view keeps per open file handle and
// per open directory (stored in fuse_file_info::fh, owned by the kernel's
// handle from open/opendir until release/releasedir).
//
// Thread-safety: the members are fixed after open; pool and read_ahead are
// themselves safe for concurrent use by several FUSE threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fuse/connection_pool.h"
#include "fuse/fuse_api.h"
#include "fuse/read_ahead.h"

namespace portalbd::fuse {

struct OpenFile {
  enum class Kind { kText, kSnapshot, kLive };
  Kind kind = Kind::kText;
  std::string text;   // kText: the content, fixed at open
  uint64_t size = 0;  // images: the export's size
  std::unique_ptr<ConnectionPool> pool;
  std::unique_ptr<ReadAhead> read_ahead;  // kSnapshot only; declared after pool: destroyed first
};

struct DirListing {
  struct Entry {
    std::string name;
    fuse_ino_t ino;
    mode_t type;  // S_IFDIR or S_IFREG
  };
  std::vector<Entry> entries;  // taken at opendir, so one listing is consistent
};

// fi->fh <-> owned object. adopt_*() takes ownership back (release paths).
template <typename T>
uint64_t to_fh(std::unique_ptr<T> p) {
  return reinterpret_cast<uint64_t>(p.release());
}
template <typename T>
T* from_fh(uint64_t fh) {
  return reinterpret_cast<T*>(fh);
}
template <typename T>
std::unique_ptr<T> adopt_fh(uint64_t fh) {
  return std::unique_ptr<T>(reinterpret_cast<T*>(fh));
}

}  // namespace portalbd::fuse
