#include "fuse/connection_pool.h"

#include <future>

namespace portalbd::fuse {
namespace {

// Why one second: long enough that readers of a dead daemon fail fast instead
// of each paying a connection attempt, short enough to recover promptly.
constexpr auto kReconnectBackoff = std::chrono::seconds(1);

}  // namespace

Result<std::unique_ptr<ConnectionPool>> ConnectionPool::open(const Options& options) {
  auto pool = std::make_unique<ConnectionPool>(PrivateTag{}, options);
  const size_t n = static_cast<size_t>(std::max(1, options.connections));
  pool->slots_.resize(n);
  {
    MutexLock lock(&pool->mu_);  // no worker yet: for the analysis only
    pool->opening_ = n;
  }
  for (size_t i = 0; i < n; ++i) pool->threads_.emplace_back([p = pool.get(), i] { p->worker(i); });

  MutexLock lock(&pool->mu_);
  while (pool->opening_ != 0) pool->cv_.wait(lock);
  Status first_error;
  bool any = false;
  for (const Status& st : pool->open_results_) {
    if (st.ok())
      any = true;
    else if (first_error.ok())
      first_error = st;
  }
  lock.unlock();
  if (!any) return first_error;  // the destructor joins the workers
  for (const Slot& s : pool->slots_) {
    if (s.conn && s.conn->alive()) {
      pool->size_ = s.conn->size();
      pool->read_only_ = s.conn->read_only();
      break;
    }
  }
  return pool;
}

ConnectionPool::~ConnectionPool() {
  std::deque<Job> cancelled;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    cancelled.swap(demand_);
    for (auto& j : prefetch_) cancelled.push_back(std::move(j));
    prefetch_.clear();
  }
  cv_.notify_all();
  for (auto& j : cancelled) j.done(Status::Cancelled("file closed"));
  for (auto& t : threads_) t.join();
}

Status ConnectionPool::run(Op op) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> result = promise->get_future();
  submit(
      std::move(op), [promise](const Status& st) { promise->set_value(st); }, Priority::kDemand);
  // No timeout here: the job's deadline bounds the worker, and the job
  // refers to the caller's buffer, so the caller must not leave before it ends.
  return result.get();
}

void ConnectionPool::submit(Op op, Done done, Priority priority) {
  Job job{std::move(op), std::move(done), Clock::now() + options_.io_timeout};
  {
    MutexLock lock(&mu_);
    if (!stopping_) {
      (priority == Priority::kDemand ? demand_ : prefetch_).push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job.done(Status::Cancelled("file closed"));
}

Status ConnectionPool::connect(Slot* slot, Deadline deadline) {
  slot->conn.reset();
  auto conn = NbdConnection::open(options_.endpoint, options_.export_name, deadline);
  if (!conn.ok()) {
    slot->retry_at = Clock::now() + kReconnectBackoff;
    slot->last_error = conn.status().message();
    return conn.status();
  }
  slot->conn.emplace(std::move(*conn));
  slot->last_error.clear();
  return Status::OK();
}

void ConnectionPool::execute(Slot* slot, Job* job) {
  for (int attempt = 0;; ++attempt) {
    if (!slot->conn || !slot->conn->alive()) {
      if (Clock::now() < slot->retry_at) {
        job->done(Status::Unavailable("NBD server unavailable: " + slot->last_error));
        return;
      }
      if (Status st = connect(slot, job->deadline); !st.ok()) {
        job->done(st);
        return;
      }
    }
    Status st = job->op(*slot->conn, job->deadline);
    // Retry once when the connection broke under the op (a daemon restart),
    // not when the server answered with an error or time ran out.
    if (st.ok() || slot->conn->alive() || attempt > 0 || Clock::now() >= job->deadline) {
      job->done(st);
      return;
    }
    slot->retry_at = {};
  }
}

void ConnectionPool::worker(size_t index) {
  Slot* slot = &slots_[index];
  Status opened = connect(slot, Clock::now() + options_.io_timeout);
  {
    MutexLock lock(&mu_);
    open_results_.push_back(opened);
    --opening_;
  }
  cv_.notify_all();

  for (;;) {
    Job job;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && demand_.empty() && prefetch_.empty()) cv_.wait(lock);
      if (stopping_) return;
      std::deque<Job>& q = demand_.empty() ? prefetch_ : demand_;
      job = std::move(q.front());
      q.pop_front();
    }
    if (Clock::now() >= job.deadline) {
      job.done(Status::Unavailable("NBD request timed out in the queue"));
      continue;
    }
    // A thread boundary: nothing may escape it.
    try {
      execute(slot, &job);
    } catch (const std::exception& e) {
      job.done(Status::IOError(std::string("internal error: ") + e.what()));
    } catch (...) {
      job.done(Status::IOError("internal error"));
    }
  }
}

}  // namespace portalbd::fuse
