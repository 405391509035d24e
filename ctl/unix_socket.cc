#include "ctl/unix_socket.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace portalbd::ctl {

Status make_unix_address(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.empty()) return Status::InvalidArgument("empty unix socket path");
  if (path.size() >= sizeof addr->sun_path) {
    return Status::InvalidArgument("unix socket path '" + path + "' is " + std::to_string(path.size()) +
                                   " bytes; the limit is " + std::to_string(sizeof addr->sun_path - 1));
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return Status::OK();
}

UniqueFd connect_unix(const std::string& path, int* error) {
  sockaddr_un addr;
  if (!make_unix_address(path, &addr).ok()) {
    *error = ENAMETOOLONG;
    return UniqueFd();
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    *error = errno;
    return fd;
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    *error = errno;
    return UniqueFd();
  }
  *error = 0;
  return fd;
}

}  // namespace portalbd::ctl
