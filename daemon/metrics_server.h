// MetricsServer: a minimal HTTP/1.1 listener that answers GET /metrics with
// the text a render callback returns (the Prometheus exposition format,
// daemon/metrics_collector.h). Off unless [metrics] address is set.
//
// Deliberately small: one thread accepts and serves one connection at a
// time, one request per connection ("Connection: close"). Bounds against any
// client: a request head over max_request_bytes gets 431, a client that does
// not send its request head within io_timeout_ms is dropped (so a stuck
// client delays other scrapes by at most that), the reply is sent with the
// same timeout. Only GET and HEAD of /metrics (a query string is ignored)
// are answered 200; any other path is 404, any other method 405, a request
// line that is not HTTP/1.x 400.
//
// Loopback only: start() refuses an address that resolves to anything but
// 127.0.0.0/8 or ::1, since the endpoint has no authentication (the config
// rule check_metrics_address() says so first, with the remedy).
//
// Ownership: owns its socket and thread. The render callback must stay
// valid until stop() returns.
// Thread-safety: start()/stop() from one controlling thread; address() and
// scrapes() from any thread after start(). render runs on the server's
// thread, concurrently with everything else in the process.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "src/util/fd.h"
#include "src/util/status.h"

namespace portalbd {

struct MetricsServerOptions {
  std::string address;  // "127.0.0.1:9110", "[::1]:9110", "localhost:9110"
  int io_timeout_ms = 5000;
  size_t max_request_bytes = 8192;
};

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  MetricsServer(MetricsServerOptions options, Render render);
  ~MetricsServer();  // stop()
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Resolves, checks loopback, binds and listens, then starts the thread.
  // Errors name the address: "metrics address 10.0.0.1:9110: ...".
  // REQUIRES: called at most once.
  Status start();
  // Stops accepting, finishes the connection being served (bounded by
  // io_timeout_ms) and joins the thread. Idempotent.
  void stop();

  // The bound address, "127.0.0.1:9110".
  const std::string& address() const { return bound_; }
  uint64_t scrapes() const { return scrapes_.load(std::memory_order_relaxed); }

 private:
  void run();
  void serve(int fd);

  const MetricsServerOptions options_;
  const Render render_;
  UniqueFd listen_fd_;
  UniqueFd wake_read_, wake_write_;  // a byte on the pipe stops run()
  std::string bound_;
  std::thread thread_;
  std::atomic<uint64_t> scrapes_{0};
};

}  // namespace portalbd
