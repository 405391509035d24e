#include "nbd/server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <list>
#include <thread>

#include "nbd/connection.h"
#include "nbd/listener.h"
#include "nbd/payload_budget.h"
#include "nbd/stats.h"
#include "src/log/log.h"
#include "src/util/mutex.h"
#include "src/util/thread_name.h"

namespace portalbd::nbd {
namespace {

// How long stop() lets connections answer their in-flight requests before it
// cuts them off (a client that stopped reading would otherwise hang stop()).
constexpr auto kStopGrace = std::chrono::seconds(10);
// A client retrying in a loop must not flood the log: one refusal line per
// this interval, saying how many went unlogged in between.
constexpr auto kRefusalLogInterval = std::chrono::seconds(1);

}  // namespace

struct Server::Impl {
  struct Listener {
    UniqueFd fd;
    std::thread accept_thread;
  };
  struct Slot {
    std::shared_ptr<Connection> connection;
    std::thread thread;
  };

  Impl(ExportProvider& e, ServerOptions o)
      : exports(e), options(std::move(o)), payload_budget(options.max_write_payload_bytes, options.max_request_bytes) {}

  void accept_loop(int listen_fd) EXCLUDES(mu);
  void reap_finished_locked() REQUIRES(mu);
  // True when another connection would pass max_connections; logs the refusal.
  bool refuse_locked(const std::string& peer) REQUIRES(mu);

  ExportProvider& exports;
  const ServerOptions options;
  StatsCounters stats;
  PayloadBudget payload_budget;    // shared by every connection; outlives them (joined in stop())
  std::unique_ptr<TlsServer> tls;  // null: TLS off; set by start() before any accept thread

  // Written by start() before any accept thread exists, read-only after.
  std::vector<Listener> listeners;
  std::string bound_tcp_address;
  bool unix_bound = false;

  mutable Mutex mu;
  bool started GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;  // no new connections once set
  std::list<Slot> slots GUARDED_BY(mu);  // finished ones are reaped at the next accept
  std::chrono::steady_clock::time_point last_refusal_log GUARDED_BY(mu) = {};
  uint64_t refusals_unlogged GUARDED_BY(mu) = 0;
};

Server::Server(ExportProvider& exports, ServerOptions options)
    : impl_(std::make_unique<Impl>(exports, std::move(options))) {}

Server::~Server() { stop(); }

Status Server::start() {
  Impl& s = *impl_;
  {
    MutexLock lock(&s.mu);
    if (s.started) return Status::InvalidArgument("NBD server already started");
    s.started = true;
  }
  if (s.options.tcp_address.empty() && s.options.unix_path.empty()) {
    return Status::InvalidArgument("NBD server needs a TCP address or a unix socket path");
  }
  if (s.options.tls.mode != TlsMode::kOff) {
    auto tls = TlsServer::Create(s.options.tls);
    if (!tls.ok()) return tls.status();
    s.tls = std::move(*tls);
  }
  if (!s.options.tcp_address.empty()) {
    auto fd = listen_tcp(s.options.tcp_address, &s.bound_tcp_address);
    if (!fd.ok()) return fd.status();
    s.listeners.push_back({std::move(*fd), {}});
  }
  if (!s.options.unix_path.empty()) {
    auto fd = listen_unix(s.options.unix_path);
    if (!fd.ok()) {
      s.listeners.clear();  // closes the TCP listener we may have opened
      return fd.status();
    }
    s.listeners.push_back({std::move(*fd), {}});
    s.unix_bound = true;
  }
  for (Impl::Listener& l : s.listeners) {
    int fd = l.fd.get();
    l.accept_thread = std::thread([&s, fd] {
      name_this_thread("nbd-accept");
      s.accept_loop(fd);
    });
  }

  auto logger = log::get("nbd");
  if (!s.bound_tcp_address.empty() && s.unix_bound) {
    logger->info("NBD server listening address={} unix={}", s.bound_tcp_address, s.options.unix_path);
  } else if (!s.bound_tcp_address.empty()) {
    logger->info("NBD server listening address={}", s.bound_tcp_address);
  } else {
    logger->info("NBD server listening unix={}", s.options.unix_path);
  }
  if (s.tls) {
    logger->info("NBD TLS tls={} certificates={} verify_peer={} psk_file={}", tls_mode_name(s.tls->mode()),
                 log::quote(s.options.tls.certificates_dir), s.options.tls.verify_peer,
                 log::quote(s.options.tls.psk_file));
  }
  return Status::OK();
}

void Server::Impl::accept_loop(int listen_fd) {
  auto logger = log::get("nbd");
  for (;;) {
    UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      int err = errno;
      {
        MutexLock lock(&mu);
        if (stopping) return;
      }
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of descriptors or memory: back off instead of spinning.
        logger->warn("NBD accept failed error={}", log::quote(errno_text(err)));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      logger->error("NBD accept failed, listener stops error={}", log::quote(errno_text(err)));
      return;
    }
    tune_accepted_socket(fd.get());
    std::string peer = peer_name(fd.get());

    MutexLock lock(&mu);
    if (stopping) return;  // fd closes here
    reap_finished_locked();
    if (refuse_locked(peer)) continue;  // fd closes here, before the greeting
    auto connection =
        std::make_shared<Connection>(std::move(fd), peer, exports, options, stats, payload_budget, tls.get());
    StatsCounters::add(stats.connections_total);
    StatsCounters::add(stats.connections_active);
    std::thread thread([this, connection] {
      name_this_thread("nbd-conn");
      connection->run();
      stats.connections_active.fetch_sub(1, std::memory_order_relaxed);
    });
    slots.push_back(Slot{std::move(connection), std::move(thread)});
  }
}

void Server::Impl::reap_finished_locked() {
  for (auto it = slots.begin(); it != slots.end();) {
    if (it->connection->finished()) {
      it->thread.join();  // returns at once: run() is over
      it = slots.erase(it);
    } else {
      ++it;
    }
  }
}

bool Server::Impl::refuse_locked(const std::string& peer) {
  // Every slot left after reaping is a connection still running.
  if (slots.size() < std::max<uint32_t>(1, options.max_connections)) return false;
  StatsCounters::add(stats.connections_refused);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_refusal_log < kRefusalLogInterval) {
    ++refusals_unlogged;
    return true;
  }
  auto logger = log::get("nbd");
  if (refusals_unlogged > 0) {
    logger->warn("refusing connection from {}: max_connections={} reached ({} more refused since the last message)",
                 peer, options.max_connections, refusals_unlogged);
  } else {
    logger->warn("refusing connection from {}: max_connections={} reached", peer, options.max_connections);
  }
  last_refusal_log = now;
  refusals_unlogged = 0;
  return true;
}

std::string Server::tcp_address() const { return impl_->bound_tcp_address; }

void Server::stop() {
  Impl& s = *impl_;
  {
    MutexLock lock(&s.mu);
    if (!s.started || s.stopping) return;
    s.stopping = true;
  }
  // 1. No new connections: shutdown() wakes accept(); then join and close.
  for (Impl::Listener& l : s.listeners) {
    ::shutdown(l.fd.get(), SHUT_RDWR);
    if (l.accept_thread.joinable()) l.accept_thread.join();
    l.fd.reset();
  }
  if (s.unix_bound) ::unlink(s.options.unix_path.c_str());

  // 2. Each connection stops reading but still answers what it has read.
  std::list<Impl::Slot> slots;
  {
    MutexLock lock(&s.mu);
    slots.swap(s.slots);
  }
  for (Impl::Slot& slot : slots) slot.connection->shutdown_read();

  // 3. Wait for them to drain; cut off whoever is still going at the deadline.
  auto deadline = std::chrono::steady_clock::now() + kStopGrace;
  for (Impl::Slot& slot : slots) {
    while (!slot.connection->finished() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!slot.connection->finished()) slot.connection->shutdown_all();
    slot.thread.join();
  }
  log::get("nbd")->info("NBD server stopped connections_served={}", s.stats.connections_total.load());
}

ServerStats Server::stats() const {
  ServerStats s = impl_->stats.snapshot();
  s.payload_bytes_held = impl_->payload_budget.held_bytes();
  return s;
}

std::vector<ClientInfo> Server::clients() const {
  MutexLock lock(&impl_->mu);
  std::vector<ClientInfo> out;
  for (const Impl::Slot& slot : impl_->slots) {
    if (!slot.connection->finished()) out.push_back(slot.connection->info());
  }
  return out;
}

}  // namespace portalbd::nbd
