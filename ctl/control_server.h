// ControlServer: the daemon's end of the control socket that portalctl talks
// to. Newline-delimited JSON over a unix stream socket; the wire format is in
// ctl/control_protocol.h and docs/control-protocol.md.
//
// Lifecycle: construct, on() every command, start(), ... , stop() (or destroy).
// Each connection is served on its own thread and may carry many requests,
// answered in order.
//
// Bounds, so that no local client can lock portalctl out or take the daemon
// down: at most max_connections open connections (one more is answered Busy
// and closed); a connection that has not sent a complete request line within
// idle_timeout_ms of connecting or of its last answer is answered Unavailable
// and closed; a request line is at most kMaxRequestBytes and nests at most
// kMaxJsonDepth levels (control_protocol.h).
//
// Long commands: a running handler is never timed out, and its answer gets
// answer_timeout_ms to reach the client counted from when it is ready (not
// from when the request came in). A request with "progress":true gets
// progress lines while its handler runs (ctl/command_progress.h): the
// handler's notes, and a heartbeat every heartbeat_ms, so that the client
// can wait as long as the command takes. A client that goes away does not
// stop the handler; its answer is dropped.
//
// Thread-safety: on() before start() only. Handlers run concurrently on
// connection threads and must be thread-safe; an exception escaping a handler
// is caught and answered as an error (it never reaches the daemon).
// start() and stop() from the owning thread; stop() is idempotent and waits
// for running handlers to return.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <thread>

#include "src/util/fd.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd::ctl {

struct ControlServerOptions {
  unsigned mode = 0600;  // permission bits of the socket file
  std::string group;     // if not empty, the socket's group (mode 0660 lets it use portalctl)
  // Each connection costs a thread; local tools need only a few.
  size_t max_connections = 64;
  // How long a connection may wait before its next complete request line.
  int idle_timeout_ms = 10000;
  // How often a running command that asked for progress sends a line when
  // it has nothing to say.
  int heartbeat_ms = 1000;
  // How long an answer may take to reach a client that does not read,
  // counted from when the answer is ready.
  int answer_timeout_ms = 10000;
};

class Progress;

class ControlServer {
 public:
  // Sets *result (an empty object on entry) and returns OK, or returns the
  // error sent to the client (its code name and message).
  using Handler = std::function<Status(const nlohmann::json& args, nlohmann::json* result)>;
  // The same, for commands that report progress (Progress::note) as they run.
  using ProgressHandler = std::function<Status(const nlohmann::json& args, nlohmann::json* result, Progress& progress)>;

  // REQUIRES: options.max_connections >= 1, options.idle_timeout_ms > 0,
  // options.heartbeat_ms > 0, options.answer_timeout_ms > 0.
  explicit ControlServer(std::string socket_path, ControlServerOptions options = {});
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Registers the handler of `cmd`, replacing any earlier one (including the
  // built-in "ping", which answers {"protocol":1}).
  // REQUIRES: start() not called yet.
  void on(const std::string& cmd, Handler handler);
  void on_with_progress(const std::string& cmd, ProgressHandler handler);

  // Creates the parent directory if missing (0755), removes a stale socket
  // file (one nobody answers on), binds, applies mode and group, and starts
  // accepting. Errors: "control socket PATH is in use by another portalbd"
  // (AlreadyExists) when a live server answers on the path; IOError otherwise.
  Status start() EXCLUDES(mu_);

  // Closes the listener and every connection, joins all threads and removes
  // the socket file (if it is still ours). Idempotent.
  void stop() EXCLUDES(mu_);

  std::string path() const { return path_; }

 private:
  struct Connection {
    UniqueFd fd;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  Status prepare_directory();
  Status remove_stale_socket();
  Status bind_listener();
  void accept_loop() EXCLUDES(mu_);
  void serve(Connection* conn);
  // Runs one request line's command and returns its answer line. Returns ""
  // when the client is known to be gone (nothing more to send).
  std::string run_request(int fd, const std::string& line);
  std::string dispatch(const std::string& cmd, const nlohmann::json& args, Progress& progress);
  void reap_finished_locked() REQUIRES(mu_);

  const std::string path_;
  const ControlServerOptions options_;
  std::map<std::string, ProgressHandler> handlers_;  // immutable once started

  UniqueFd listener_;
  UniqueFd wake_read_, wake_write_;  // a byte on this pipe stops accept_loop
  std::thread accept_thread_;
  dev_t socket_dev_ = 0;  // identity of the socket file we created, so that
  ino_t socket_ino_ = 0;  // stop() never unlinks someone else's

  Mutex mu_;
  std::list<std::unique_ptr<Connection>> connections_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  bool started_ = false;  // owner thread only
};

}  // namespace portalbd::ctl
