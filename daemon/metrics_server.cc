#include "daemon/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

#include "src/config/config.h"
#include "src/log/log.h"
#include "src/util/thread_name.h"

namespace portalbd {
namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

bool is_loopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    return (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
  return false;
}

std::string describe(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {0};
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  port = ntohs(in6->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

std::string response(int code, const char* reason, const std::string& body, bool head_only,
                     const char* content_type = "text/plain; charset=utf-8", const char* extra = "") {
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + content_type +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra + "\r\n";
  if (!head_only) out += body;
  return out;
}

// Ends our side, then reads and drops what the client still sends (bounded
// in time and bytes) until it closes: closing with unread input would reset
// the connection, and the client could lose the reply (a 431 to a request
// whose head we stopped reading).
void drain_before_close(int fd, int timeout_ms) {
  (void)::shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (size_t dropped = 0; dropped < (1u << 20);) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    dropped += static_cast<size_t>(n);
  }
}

}  // namespace

MetricsServer::MetricsServer(MetricsServerOptions options, Render render)
    : options_(std::move(options)), render_(std::move(render)) {}

MetricsServer::~MetricsServer() { stop(); }

Status MetricsServer::start() {
  const std::string where = "metrics address " + options_.address;
  auto hp = parse_host_port(options_.address);
  if (!hp.ok()) return hp.status().With(where);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(hp->port);
  if (int rc = ::getaddrinfo(hp->host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return Status::InvalidArgument(where + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(found, ::freeaddrinfo);
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (!is_loopback(ai->ai_addr)) {
      return Status::InvalidArgument(where + ": " + describe(ai->ai_addr) +
                                     " is not a loopback address; metrics are served on loopback only");
    }
  }
  const addrinfo* ai = found;
  // Non-blocking, so an accept after poll never waits for a client that
  // went away in between; the accepted sockets block (poll bounds them).
  UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
  if (!fd) return Status::IOError(where + ": socket: " + std::strerror(errno));
  int one = 1;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
    return Status::IOError("bind " + options_.address + " (metrics): " + std::strerror(errno));
  }
  if (::listen(fd.get(), 16) != 0) return Status::IOError(where + ": listen: " + std::strerror(errno));
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    return Status::IOError(where + ": getsockname: " + std::strerror(errno));
  }
  bound_ = describe(reinterpret_cast<const sockaddr*>(&bound));

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) return Status::IOError(where + ": pipe: " + std::strerror(errno));
  wake_read_.reset(pipe_fds[0]);
  wake_write_.reset(pipe_fds[1]);
  listen_fd_ = std::move(fd);
  thread_ = std::thread([this] {
    name_this_thread("metrics");
    run();
  });
  log::get("metrics")->info("serving Prometheus metrics url=http://{}/metrics", bound_);
  return Status::OK();
}

void MetricsServer::stop() {
  if (!thread_.joinable()) return;
  const char byte = 1;
  (void)!::write(wake_write_.get(), &byte, 1);
  thread_.join();
  listen_fd_.reset();
}

void MetricsServer::run() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::get("metrics")->error("poll failed, metrics endpoint stopped error={}", log::quote(std::strerror(errno)));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) {
      // Out of fds or memory: back off instead of spinning on a ready socket
      // (a client that went away is EAGAIN or ECONNABORTED: try again now).
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED && errno != EINTR) {
        pollfd wake{wake_read_.get(), POLLIN, 0};
        if (::poll(&wake, 1, 100) > 0) return;
      }
      continue;
    }
    serve(conn.get());
  }
}

// Reads the request head, answers, and returns; the caller closes `fd`.
void MetricsServer::serve(int fd) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.io_timeout_ms);
  std::string head;
  char buf[1024];
  for (;;) {
    if (head.find("\r\n\r\n") != std::string::npos) break;
    if (head.size() > options_.max_request_bytes) {
      const std::string r = response(431, "Request Header Fields Too Large", "request too large\n", false);
      (void)send_all(fd, std::as_bytes(std::span(r)));
      drain_before_close(fd, 1000);
      return;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;  // too slow: dropped without an answer
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0 || fds[1].revents != 0) return;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
  }

  // The request line: METHOD SP TARGET SP HTTP/1.x
  const std::string_view line = std::string_view(head).substr(0, head.find("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  std::string reply;
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).substr(0, 7) != "HTTP/1." ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    reply = response(400, "Bad Request", "bad request line\n", false);
  } else {
    const std::string_view method = line.substr(0, sp1);
    std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    path = path.substr(0, path.find('?'));
    const bool head_only = method == "HEAD";
    if (method != "GET" && !head_only) {
      reply = response(405, "Method Not Allowed", "only GET and HEAD\n", false, "text/plain; charset=utf-8",
                       "Allow: GET, HEAD\r\n");
    } else if (path != "/metrics") {
      reply = response(404, "Not Found", "not found; metrics are at /metrics\n", head_only);
    } else {
      scrapes_.fetch_add(1, std::memory_order_relaxed);
      reply = response(200, "OK", render_(), head_only, kContentType);
    }
  }
  // A reader that stops reading cannot hold the thread past the timeout.
  timeval tv{options_.io_timeout_ms / 1000, (options_.io_timeout_ms % 1000) * 1000};
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (send_all(fd, std::as_bytes(std::span(reply))).ok()) drain_before_close(fd, 1000);
}

}  // namespace portalbd
