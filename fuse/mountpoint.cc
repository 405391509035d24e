#include "fuse/mountpoint.h"

#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

extern char** environ;

namespace portalbd::fuse {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (oct.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::stoi(oct, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

std::string read_mountinfo() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<std::string> fstype_at(const std::string& mountinfo, const std::string& path) {
  std::istringstream lines(mountinfo);
  std::string line;
  std::optional<std::string> found;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string w;
    while (fields >> w) f.push_back(w);
    if (f.size() < 7 || unescape(f[4]) != path) continue;
    for (size_t i = 6; i + 1 < f.size(); ++i) {
      if (f[i] == "-") {
        found = f[i + 1];  // the last mount on a path is the visible one
        break;
      }
    }
  }
  return found;
}

Result<std::string> check_mountpoint(const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("no mountpoint given");
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound("mountpoint " + path + " does not exist");
    if (err == EACCES) return Status::Unavailable("no permission to use mountpoint " + path);
    return Status::InvalidArgument("mountpoint " + path + ": " + errno_text(err));
  }
  const std::string abs = resolved;
  struct stat st {};
  if (stat(abs.c_str(), &st) != 0) return Status::InvalidArgument("mountpoint " + path + ": " + errno_text(errno));
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument("mountpoint " + path + " is not a directory");
  if (auto fs = fstype_at(read_mountinfo(), abs)) {
    return Status::Busy("mountpoint " + path + " is busy: " + *fs + " is already mounted there");
  }
  // fusermount3 requires write access for unprivileged users; root may mount anywhere.
  if (geteuid() != 0 && access(abs.c_str(), W_OK) != 0) {
    return Status::Unavailable("no permission to mount on " + path + " (" + errno_text(errno) + ")");
  }
  return abs;
}

Status unmount_view(const std::string& path) {
  char resolved[PATH_MAX];
  const std::string abs = realpath(path.c_str(), resolved) != nullptr ? resolved : path;
  const auto fs = fstype_at(read_mountinfo(), abs);
  if (!fs || fs->rfind("fuse", 0) != 0 || fs->find("portalbd") == std::string::npos) {
    return Status::NotFound("no portalbd view is mounted at " + path);
  }
  if (geteuid() == 0) {
    if (umount2(abs.c_str(), 0) != 0) {
      const int err = errno;
      if (err == EBUSY) return Status::Busy("cannot unmount " + path + ": still in use (open files or loop devices)");
      return Status::IOError("cannot unmount " + path + ": " + errno_text(err));
    }
    return Status::OK();
  }
  const char* argv[] = {"fusermount3", "-u", "--", abs.c_str(), nullptr};
  pid_t pid = 0;
  if (const int err = posix_spawnp(&pid, "fusermount3", nullptr, nullptr, const_cast<char**>(argv), environ);
      err != 0) {
    return Status::IOError("cannot run fusermount3: " + errno_text(err));
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) == -1 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) return Status::Busy("fusermount3 -u " + path + " failed");
  return Status::OK();
}

}  // namespace portalbd::fuse
