#include "src/store/file_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "src/util/fd.h"

namespace portalbd {
namespace fs = std::filesystem;

namespace {

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// mkdir -p. Objects are the volume's bytes: the directories made here are
// 0700 and the files 0600 whatever the umask; existing ones are left alone.
Status make_private_dirs(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::IOError(dir + " exists and is not a directory");
    return Status::OK();
  }
  if (errno != ENOENT) return Status::IOError(errno_text("cannot access", dir));
  const std::string parent = fs::path(dir).parent_path().string();
  if (!parent.empty() && parent != dir) PBD_RETURN_IF_ERROR(make_private_dirs(parent));
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return Status::OK();  // a concurrent put made it
    return Status::IOError(errno_text("create directory", dir));
  }
  if (::chmod(dir.c_str(), 0700) != 0) return Status::IOError(errno_text("chmod", dir));
  return Status::OK();
}

Status ensure_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return Status::OK();
  PBD_RETURN_IF_ERROR(make_private_dirs(dir));
  return fsync_dir(fs::path(dir).parent_path().string());
}

}  // namespace

Result<std::shared_ptr<FileStore>> FileStore::Open(const std::string& root) {
  if (root.empty()) return Status::InvalidArgument("file:// store needs a directory path");
  std::string abs = fs::absolute(root).lexically_normal().string();
  if (abs.size() > 1 && abs.back() == '/') abs.pop_back();
  PBD_RETURN_IF_ERROR(make_private_dirs(abs).With("file:// store"));
  if (::access(abs.c_str(), R_OK | W_OK | X_OK) != 0) {
    return Status::IOError(errno_text("cannot access storage directory", abs));
  }
  return std::shared_ptr<FileStore>(new FileStore(abs));
}

Result<std::string> FileStore::path_for(const std::string& key) const {
  if (key.empty() || key.front() == '/' || key.back() == '/') {
    return Status::InvalidArgument("bad object key '" + key + "'");
  }
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string::npos) end = key.size();
    std::string_view part(key.data() + start, end - start);
    if (part.empty() || part == "." || part == ".." || part.front() == '.') {
      return Status::InvalidArgument("bad object key '" + key + "'");
    }
    start = end + 1;
  }
  return root_ + "/" + key;
}

Result<std::string> FileStore::write_temp(const std::string& path, std::span<const std::byte> data) {
  std::string dir = fs::path(path).parent_path().string();
  PBD_RETURN_IF_ERROR(ensure_dir(dir));
  std::string tmp = dir + "/." + fs::path(path).filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                    std::to_string(temp_counter_++);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return Status::IOError(errno_text("create", tmp));
  Status st = write_all(fd.get(), data);
  if (st.ok()) st = fsync_fd(fd.get(), tmp);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st.With("write " + tmp);
  }
  return tmp;
}

Status FileStore::put(const std::string& key, std::span<const std::byte> data) {
  auto path = path_for(key);
  if (!path.ok()) return path.status();
  auto tmp = write_temp(*path, data);
  if (!tmp.ok()) return tmp.status();
  if (::rename(tmp->c_str(), path->c_str()) != 0) {
    Status st = Status::IOError(errno_text("rename to", *path));
    ::unlink(tmp->c_str());
    return st;
  }
  return fsync_dir(fs::path(*path).parent_path().string());
}

Status FileStore::put_if_absent(const std::string& key, std::span<const std::byte> data) {
  auto path = path_for(key);
  if (!path.ok()) return path.status();
  auto tmp = write_temp(*path, data);
  if (!tmp.ok()) return tmp.status();
  // link(2) refuses an existing target atomically: the conditional put.
  int rc = ::link(tmp->c_str(), path->c_str());
  int err = errno;
  ::unlink(tmp->c_str());
  if (rc != 0) {
    if (err == EEXIST) return Status::AlreadyExists("object " + key + " already exists");
    errno = err;
    return Status::IOError(errno_text("link", *path));
  }
  return fsync_dir(fs::path(*path).parent_path().string());
}

Status FileStore::get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) {
  out->clear();
  auto path = path_for(key);
  if (!path.ok()) return path.status();
  UniqueFd fd(::open(path->c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status::NotFound("object " + key + " not found");
    return Status::IOError(errno_text("open", *path));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::IOError(errno_text("stat", *path));
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset >= size) return Status::OK();
  out->resize(std::min(length, size - offset));
  return pread_all(fd.get(), std::span<std::byte>(*out), offset).With("read " + *path);
}

Result<uint64_t> FileStore::get_range_cached(const std::string& key, uint64_t offset, std::span<std::byte> out) {
  // Every failure only declines: a get_range() will say what is wrong.
  auto path = path_for(key);
  if (!path.ok()) return Status::Unavailable(path.status().ToString());
  UniqueFd fd(::open(path->c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::Unavailable(errno_text("open", *path));
  struct iovec iov {
    out.data(), out.size()
  };
  const ssize_t n = ::preadv2(fd.get(), &iov, 1, static_cast<off_t>(offset), RWF_NOWAIT);
  if (n < 0) return Status::Unavailable(errno_text("preadv2", *path));  // EAGAIN: not cached
  if (static_cast<uint64_t>(n) < out.size()) {
    // Short: the end of the file, or of the pages the kernel holds.
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || offset + static_cast<uint64_t>(n) < static_cast<uint64_t>(st.st_size)) {
      return Status::Unavailable("not all of it is cached: " + *path);
    }
  }
  return static_cast<uint64_t>(n);
}

Status FileStore::get(const std::string& key, std::vector<std::byte>* out) {
  return get_range(key, 0, UINT64_MAX, out);
}

Result<ObjectInfo> FileStore::head(const std::string& key) {
  auto path = path_for(key);
  if (!path.ok()) return path.status();
  struct stat st {};
  if (::stat(path->c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound("object " + key + " not found");
    return Status::IOError(errno_text("stat", *path));
  }
  const int64_t modified_ms = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
  return ObjectInfo{key, static_cast<uint64_t>(st.st_size), modified_ms};
}

Status FileStore::list(const std::string& prefix, std::vector<ObjectInfo>* out) {
  out->clear();
  // Walk only the directory the prefix names, not the whole store.
  std::string dir = root_;
  if (auto slash = prefix.rfind('/'); slash != std::string::npos) dir += "/" + prefix.substr(0, slash);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::OK();
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string name = it->path().filename().string();
    if (name.empty() || name.front() == '.') continue;
    std::string key = it->path().string().substr(root_.size() + 1);
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    out->push_back({key, static_cast<uint64_t>(it->file_size(ec))});
  }
  if (ec) return Status::IOError("list " + dir + ": " + ec.message());
  std::sort(out->begin(), out->end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return Status::OK();
}

Status FileStore::remove(const std::string& key) {
  auto path = path_for(key);
  if (!path.ok()) return path.status();
  if (::unlink(path->c_str()) != 0 && errno != ENOENT) return Status::IOError(errno_text("unlink", *path));
  return Status::OK();
}

}  // namespace portalbd
