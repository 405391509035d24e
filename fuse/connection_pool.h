// ConnectionPool: the NBD connections behind one open image file.
//
// Each of `connections` workers owns one NbdConnection to the same export and
// takes jobs from a shared queue; demand jobs (a reader waits) go before
// prefetch jobs (read-ahead). Several connections let the kernel's parallel
// read requests and our read-ahead proceed at once (portalbd advertises
// multi-conn, so writes and flushes on different connections are coherent).
//
// All connections are opened in open(), i.e. at FUSE open(): portalbd keeps a
// snapshot's data readable for a connection that has it open, so a file that
// is open stays readable after its snapshot is deleted, until it is closed.
//
// Failure handling: every job has a deadline (submit time + io_timeout) that
// bounds queueing, reconnecting and the I/O itself, so a dead or hung daemon
// turns into an error, never a hang. A worker whose connection broke
// reconnects on its next job (at most once per second), and a job that failed
// because the connection broke is retried once on a fresh connection: after
// the daemon restarts, readers recover without reopening the file.
//
// Ownership: owns its worker threads and their connections; the destructor
// stops the workers (waiting at most for their current jobs, which are bounded
// by their deadlines) and cancels queued jobs.
// Thread-safety: run() and submit() may be called from any thread; mu_ guards
// the queues and stopping_. Each worker's Slot is touched only by that worker.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fuse/nbd_connection.h"
#include "fuse/nbd_endpoint.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd::fuse {

class ConnectionPool {
 public:
  struct Options {
    NbdEndpoint endpoint;
    std::string export_name;
    int connections = 4;
    std::chrono::milliseconds io_timeout{30000};
  };
  // One operation on a connection; must not throw past its own body (the
  // worker catches and reports IOError, but the op should not rely on it).
  using Op = std::function<Status(NbdConnection& conn, Deadline deadline)>;
  using Done = std::function<void(const Status&)>;
  enum class Priority { kDemand, kPrefetch };

  // Opens every connection in parallel; succeeds when at least one opened.
  static Result<std::unique_ptr<ConnectionPool>> open(const Options& options);

  struct PrivateTag {};  // construct through open() only
  ConnectionPool(PrivateTag, Options options) : options_(std::move(options)) {}
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  uint64_t size() const { return size_; }
  bool read_only() const { return read_only_; }

  // Runs `op` on some connection and waits for it.
  Status run(Op op) EXCLUDES(mu_);
  // Queues `op`; `done` runs on a worker thread (or here, when stopping) and
  // must not throw.
  void submit(Op op, Done done, Priority priority) EXCLUDES(mu_);

 private:
  struct Job {
    Op op;
    Done done;
    Deadline deadline;
  };
  struct Slot {
    std::optional<NbdConnection> conn;
    Clock::time_point retry_at{};
    std::string last_error;
  };

  void worker(size_t index) EXCLUDES(mu_);
  Status connect(Slot* slot, Deadline deadline);
  void execute(Slot* slot, Job* job);

  const Options options_;
  uint64_t size_ = 0;
  bool read_only_ = true;
  std::vector<Slot> slots_;  // slots_[i] belongs to threads_[i]
  std::vector<std::thread> threads_;

  Mutex mu_;
  CondVar cv_;
  std::deque<Job> demand_ GUARDED_BY(mu_);
  std::deque<Job> prefetch_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  size_t opening_ GUARDED_BY(mu_) = 0;  // workers still in their first connect
  std::vector<Status> open_results_ GUARDED_BY(mu_);
};

}  // namespace portalbd::fuse
