#include "nbd/listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "nbd/socket_io.h"

namespace portalbd::nbd {
namespace {

// Backlog: clients connect in bursts (multi-conn, nbdcopy), never thousands.
constexpr int kBacklog = 128;

std::string format_address(const struct sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const struct sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unknown";
}

// "host:port" or "[v6host]:port" -> (host, port). False when malformed.
bool split_host_port(const std::string& in, std::string* host, std::string* port) {
  size_t colon = in.rfind(':');
  if (colon == std::string::npos || colon + 1 == in.size()) return false;
  *host = in.substr(0, colon);
  *port = in.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  for (char c : *port) {
    if (c < '0' || c > '9') return false;
  }
  return port->size() <= 5 && std::stoul(*port) <= 65535;
}

}  // namespace

Result<UniqueFd> listen_tcp(const std::string& host_port, std::string* bound) {
  std::string host, port;
  if (!split_host_port(host_port, &host, &port)) {
    return Status::InvalidArgument("NBD address " + host_port + ": expected host:port");
  }
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* found = nullptr;
  int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (gai != 0) return Status::InvalidArgument("resolve " + host_port + ": " + gai_strerror(gai));
  std::unique_ptr<struct addrinfo, decltype(&freeaddrinfo)> guard(found, &freeaddrinfo);

  Status last = Status::InvalidArgument("resolve " + host_port + ": no addresses");
  for (struct addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) {
      last = Status::IOError("socket " + host_port + ": " + errno_text(errno));
      continue;
    }
    int one = 1;
    // Restarting the daemon must not wait out TIME_WAIT on the NBD port.
    (void)setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last = Status::IOError("bind " + host_port + ": " + errno_text(errno));
      continue;
    }
    if (::listen(fd.get(), kBacklog) != 0) {
      last = Status::IOError("listen " + host_port + ": " + errno_text(errno));
      continue;
    }
    struct sockaddr_storage ss {};
    socklen_t len = sizeof ss;
    if (getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), &len) == 0) {
      *bound = format_address(reinterpret_cast<struct sockaddr*>(&ss));
    } else {
      *bound = host_port;
    }
    return fd;
  }
  return last;
}

Result<UniqueFd> listen_unix(const std::string& path) {
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Status::InvalidArgument("NBD unix socket " + path + ": path empty or longer than " +
                                   std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  auto* sa = reinterpret_cast<struct sockaddr*>(&addr);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::AlreadyExists("bind " + path + ": exists and is not a socket");
    // Someone answering on it means another server owns it.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe && ::connect(probe.get(), sa, sizeof addr) == 0) {
      return Status::AlreadyExists("bind " + path + ": " + errno_text(EADDRINUSE));
    }
    ::unlink(path.c_str());
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::IOError("socket " + path + ": " + errno_text(errno));
  if (::bind(fd.get(), sa, sizeof addr) != 0) return Status::IOError("bind " + path + ": " + errno_text(errno));
  if (::listen(fd.get(), kBacklog) != 0) return Status::IOError("listen " + path + ": " + errno_text(errno));
  return fd;
}

std::string peer_name(int fd) {
  struct sockaddr_storage ss {};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return "unknown";
  if (ss.ss_family == AF_UNIX) {
    struct ucred cred {};
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) return "unix:pid=" + std::to_string(cred.pid);
    return "unix";
  }
  return format_address(reinterpret_cast<struct sockaddr*>(&ss));
}

void tune_accepted_socket(int fd) {
  struct sockaddr_storage ss {};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

}  // namespace portalbd::nbd
