// ControlServer: socket setup (directory, stale socket, bind, permissions),
// the accept loop, and one thread per connection reading request lines.
//
// Threads and locks: the owner thread calls start()/stop(); accept_loop runs
// on accept_thread_; serve() on each Connection::thread. mu_ guards
// connections_ and stopping_. A Connection's fd stays open until its thread
// is joined (by reap_finished_locked or stop), so stop() may shutdown() it
// from another thread without racing a close and fd reuse.
#include "ctl/control_server.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "ctl/command_progress.h"
#include "ctl/control_protocol.h"
#include "ctl/line_io.h"
#include "ctl/unix_socket.h"
#include "src/log/log.h"
#include "src/util/thread_name.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

constexpr auto kRefusalLogInterval = std::chrono::seconds(10);

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// mkdir -p with mode 0755 for the components that are missing, whatever the
// umask (the daemon's is 077): a socket of mode 0660 is of use to its group
// only through directories the group may search.
Status make_dirs(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::IOError(dir + " exists and is not a directory");
    return Status::OK();
  }
  if (errno != ENOENT) return Status::IOError("cannot access " + dir + ": " + errno_text());
  std::string parent = parent_dir(dir);
  if (parent != dir) PBD_RETURN_IF_ERROR(make_dirs(parent));
  if (::mkdir(dir.c_str(), 0755) != 0) {
    if (errno == EEXIST) return Status::OK();  // made by someone else meanwhile: theirs to set
    return Status::IOError("cannot create directory " + dir + ": " + errno_text());
  }
  if (::chmod(dir.c_str(), 0755) != 0) return Status::IOError("cannot chmod directory " + dir + ": " + errno_text());
  return Status::OK();
}

Result<gid_t> lookup_group(const std::string& name) {
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* found = nullptr;
  int rc = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) return Status::InvalidArgument("unknown group '" + name + "'");
  return found->gr_gid;
}

}  // namespace

ControlServer::ControlServer(std::string socket_path, ControlServerOptions options)
    : path_(std::move(socket_path)), options_(std::move(options)) {
  assert(options_.max_connections >= 1 && options_.idle_timeout_ms > 0 && options_.heartbeat_ms > 0 &&
         options_.answer_timeout_ms > 0);
  // Lets clients (and tests, and health checks) tell a live daemon from a
  // stale socket without depending on any daemon command.
  handlers_["ping"] = [](const json&, json* result, Progress&) {
    (*result)["protocol"] = kProtocolVersion;
    return Status::OK();
  };
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::on(const std::string& cmd, Handler handler) {
  assert(!started_);
  handlers_[cmd] = [handler = std::move(handler)](const json& args, json* result, Progress&) {
    return handler(args, result);
  };
}

void ControlServer::on_with_progress(const std::string& cmd, ProgressHandler handler) {
  assert(!started_);
  handlers_[cmd] = std::move(handler);
}

Status ControlServer::prepare_directory() {
  const std::string dir = parent_dir(path_);
  PBD_RETURN_IF_ERROR(make_dirs(dir));
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::IOError("cannot access " + dir + ": " + errno_text());
  // In a shared directory such as /tmp, a directory made by another user
  // could let them swap our socket for theirs.
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    return Status::IOError("directory " + dir + " belongs to uid " + std::to_string(st.st_uid) +
                           ", not to us; refusing to put the control socket there");
  }
  return Status::OK();
}

Status ControlServer::remove_stale_socket() {
  struct stat st;
  if (::lstat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::OK();
    return Status::IOError("cannot access control socket " + path_ + ": " + errno_text());
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::IOError(path_ + " exists and is not a socket; refusing to replace it");
  }
  int err = 0;
  UniqueFd probe = connect_unix(path_, &err);
  if (probe) return Status::AlreadyExists("control socket " + path_ + " is in use by another portalbd");
  if (err != ECONNREFUSED) {
    return Status::IOError("cannot check control socket " + path_ + ": " + std::strerror(err));
  }
  // Nobody listens: a daemon died without cleaning up.
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    return Status::IOError("cannot remove stale control socket " + path_ + ": " + errno_text());
  }
  log::get("ctl")->info("removed stale control socket path={}", path_);
  return Status::OK();
}

Status ControlServer::bind_listener() {
  sockaddr_un addr;
  PBD_RETURN_IF_ERROR(make_unix_address(path_, &addr));
  // Bind under a temporary name, set permissions, then rename into place, so
  // that the socket never exists at its real path with the umask's mode.
  // Paths too long for the suffix bind directly and chmod after.
  std::string bind_path = path_ + ".new" + std::to_string(::getpid());
  if (!make_unix_address(bind_path, &addr).ok()) bind_path = path_;
  PBD_RETURN_IF_ERROR(make_unix_address(bind_path, &addr));

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::IOError("socket: " + errno_text());
  if (bind_path != path_) ::unlink(bind_path.c_str());  // a leftover from a crash of this pid
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::IOError("cannot bind control socket " + path_ + ": " + errno_text());
  }
  auto fail = [&](const std::string& what) {
    Status st = Status::IOError(what + " " + path_ + ": " + errno_text());
    ::unlink(bind_path.c_str());
    return st;
  };
  if (!options_.group.empty()) {
    auto gid = lookup_group(options_.group);
    if (!gid.ok()) {
      ::unlink(bind_path.c_str());
      return gid.status().With("control socket " + path_);
    }
    if (::chown(bind_path.c_str(), static_cast<uid_t>(-1), *gid) != 0) return fail("cannot set group of");
  }
  if (::chmod(bind_path.c_str(), options_.mode) != 0) return fail("cannot chmod");
  if (::listen(fd.get(), 64) != 0) return fail("cannot listen on");
  if (bind_path != path_ && ::rename(bind_path.c_str(), path_.c_str()) != 0) return fail("cannot rename socket to");
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0) {
    socket_dev_ = st.st_dev;
    socket_ino_ = st.st_ino;
  }
  listener_ = std::move(fd);
  return Status::OK();
}

Status ControlServer::start() {
  if (started_) return Status::InvalidArgument("control server already started");
  sockaddr_un addr;
  PBD_RETURN_IF_ERROR(make_unix_address(path_, &addr).With("control socket"));
  PBD_RETURN_IF_ERROR(prepare_directory());
  PBD_RETURN_IF_ERROR(remove_stale_socket());
  PBD_RETURN_IF_ERROR(bind_listener());
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    Status st = Status::IOError("pipe: " + errno_text());
    listener_.reset();
    ::unlink(path_.c_str());
    return st;
  }
  wake_read_.reset(pipe_fds[0]);
  wake_write_.reset(pipe_fds[1]);
  {
    MutexLock lock(&mu_);
    stopping_ = false;
  }
  started_ = true;
  accept_thread_ = std::thread([this] {
    name_this_thread("ctl-accept");
    accept_loop();
  });
  log::get("ctl")->info("control socket listening path={}", path_);
  return Status::OK();
}

void ControlServer::stop() {
  if (!started_) return;
  started_ = false;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  char byte = 1;
  while (::write(wake_write_.get(), &byte, 1) < 0 && errno == EINTR) {
  }
  accept_thread_.join();

  std::list<std::unique_ptr<Connection>> conns;
  {
    MutexLock lock(&mu_);
    conns.swap(connections_);
  }
  // Wakes every connection thread blocked in poll/recv; running handlers
  // finish first, their answers then fail to send.
  for (auto& c : conns) ::shutdown(c->fd.get(), SHUT_RDWR);
  for (auto& c : conns) c->thread.join();
  conns.clear();

  listener_.reset();
  wake_read_.reset();
  wake_write_.reset();
  struct stat st;
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
    ::unlink(path_.c_str());
  }
  log::get("ctl")->info("control socket closed path={}", path_);
}

void ControlServer::reap_finished_locked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void ControlServer::accept_loop() {
  uint64_t refused = 0;  // since the last log line about refusals
  std::chrono::steady_clock::time_point last_refusal_log{};
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::get("ctl")->error("control socket poll failed error=\"{}\"", errno_text());
      return;
    }
    if (fds[1].revents != 0) return;  // stop()
    if (fds[0].revents == 0) continue;
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) {
      if (errno == EMFILE || errno == ENFILE) {
        log::get("ctl")->warn("control socket cannot accept error=\"{}\"", errno_text());
        ::usleep(100 * 1000);  // let descriptors free up instead of spinning
      }
      continue;
    }
    MutexLock lock(&mu_);
    if (stopping_) return;
    reap_finished_locked();
    if (connections_.size() >= options_.max_connections) {
      // Answered before the client's request arrives: the client reads it
      // even when its send fails on the closed socket (control_client.cc).
      const std::string why = "portalbd is busy: all " + std::to_string(options_.max_connections) +
                              " control connections are in use (idle ones close after " +
                              std::to_string(options_.idle_timeout_ms) + " ms); try again";
      (void)send_with_deadline(client.get(), encode_error(Status::Busy(why)), deadline_after_ms(100));
      ++refused;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_refusal_log >= kRefusalLogInterval) {  // a flood must not flood the log
        log::get("ctl")->warn("control connection refused: busy max_connections={} refused={}",
                              options_.max_connections, refused);
        last_refusal_log = now;
        refused = 0;
      }
      continue;
    }
    auto conn = std::make_unique<Connection>();
    conn->fd = std::move(client);
    Connection* raw = conn.get();
    connections_.push_back(std::move(conn));
    raw->thread = std::thread([this, raw] {
      name_this_thread("ctl-client");
      serve(raw);
    });
  }
}

void ControlServer::serve(Connection* conn) {
  const int fd = conn->fd.get();
  LineReader reader(fd, kMaxRequestBytes);
  std::string line;
  // The idle deadline runs only while no request is in hand: a handler may
  // take as long as it needs (gc --wait), and the wait for the next request
  // starts after the answer is sent. Blank lines are not requests.
  Deadline idle_deadline = deadline_after_ms(options_.idle_timeout_ms);
  for (;;) {
    auto outcome = reader.next(&line, idle_deadline);
    if (outcome == LineReader::Outcome::kTimeout) {
      log::get("ctl")->debug("closing idle control connection idle_timeout_ms={}", options_.idle_timeout_ms);
      (void)send_with_deadline(
          fd,
          encode_error(Status::Unavailable("no complete request within " + std::to_string(options_.idle_timeout_ms) +
                                           " ms; closing the idle connection")),
          deadline_after_ms(100));
      break;
    }
    if (outcome == LineReader::Outcome::kTooLong) {
      // The rest of the stream cannot be split into requests: answer, close.
      (void)send_with_deadline(
          fd,
          encode_error(Status::InvalidArgument("request line longer than " + std::to_string(kMaxRequestBytes) +
                                               " bytes; closing the connection")),
          deadline_after_ms(options_.answer_timeout_ms));
      break;
    }
    if (outcome != LineReader::Outcome::kLine) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are ignored
    const std::string answer = run_request(fd, line);
    // The deadline starts now, once the answer exists: a command may run
    // far longer than answer_timeout_ms.
    if (answer.empty() || !send_with_deadline(fd, answer, deadline_after_ms(options_.answer_timeout_ms)).ok()) break;
    idle_deadline = deadline_after_ms(options_.idle_timeout_ms);
  }
  // Tell the client we are done now; the fd itself is closed when reaped.
  ::shutdown(fd, SHUT_RDWR);
  conn->done.store(true);
}

std::string ControlServer::run_request(int fd, const std::string& line) {
  std::string cmd;
  json args;
  bool want_progress = false;
  Status st = parse_request(line, &cmd, &args, &want_progress);
  if (!st.ok()) return encode_error(st);
  if (!want_progress) {
    NoProgress quiet;
    return dispatch(cmd, args, quiet);
  }
  ProgressChannel channel(fd, options_.heartbeat_ms);
  std::string answer = dispatch(cmd, args, channel);
  if (!channel.finish()) {
    log::get("ctl")->info("control client went away before the answer cmd={}", cmd);
    return "";
  }
  return answer;
}

std::string ControlServer::dispatch(const std::string& cmd, const json& args, Progress& progress) {
  Status st;
  auto it = handlers_.find(cmd);
  if (it == handlers_.end()) {
    std::string known;
    for (const auto& [name, handler] : handlers_) known += (known.empty() ? "" : ", ") + name;
    return encode_error(Status::InvalidArgument("unknown command '" + cmd + "' (known: " + known + ")"));
  }
  json result = json::object();
  try {
    st = it->second(args, &result, progress);
  } catch (const json::exception& e) {
    // Almost always a handler reading an argument of the wrong type.
    st = Status::InvalidArgument("bad arguments for '" + cmd + "': " + e.what());
  } catch (const std::exception& e) {
    log::get("ctl")->error("control command failed cmd={} error={}", cmd, log::quote(e.what()));
    st = Status::IOError("internal error in '" + cmd + "': " + e.what());
  } catch (...) {
    log::get("ctl")->error("control command failed cmd={} error=unknown", cmd);
    st = Status::IOError("internal error in '" + cmd + "'");
  }
  log::get("ctl")->debug("control request cmd={} ok={}", cmd, st.ok());
  if (!st.ok()) return encode_error(st);
  return encode_ok(result);
}

}  // namespace portalbd::ctl
