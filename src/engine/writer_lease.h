// WriterLease: "one writer per volume" (DESIGN invariant 6) on any object store.
//
// The lease is one object, lock/writer.json, naming its holder (host, pid,
// start time), a random token and an expiry. Acquire creates it with a
// conditional put, so of two daemons starting together exactly one wins where
// the store enforces conditional puts (file://, memory://, S3 with
// If-None-Match). A claim is broken only when it is provably stale: its holder
// was on this host and its pid is gone, or its expiry passed (the holder renews
// it every ttl/4), or the operator passes take_over.
//
// A writer checks the lease before every segment upload (check()) and renews
// it periodically (renew()). When the token is no longer its own, another
// daemon took over: it gets kFenced and must stop writing — it never
// overwrites the new holder's data. The window between check() and the PUT
// that follows is not closed (that needs a compare-and-swap the stores do not
// all offer); the expiry keeps it short.
//
// Thread-safety: all methods are safe concurrently (one mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "src/store/object_store.h"

namespace portalbd {

struct LeaseHolder {
  std::string host;
  int64_t pid = 0;
  int64_t started_unix_ms = 0;
  int64_t expires_unix_ms = 0;
  std::string token;
  std::string describe() const;  // "host web1 pid 4242 since 2026-11-24T22:48:45Z"
};

struct LeaseOptions {
  int64_t ttl_ms = 60000;
  bool take_over = false;
  std::function<int64_t()> clock;  // unix ms; defaults to the system clock
  std::string host;                // defaults to gethostname()
  int64_t pid = 0;                 // defaults to getpid()
};

class WriterLease {
 public:
  static constexpr const char* kKey = "lock/writer.json";

  // Claims the volume, or fails with kBusy naming the holder.
  static Result<std::unique_ptr<WriterLease>> Acquire(std::shared_ptr<ObjectStore> store, LeaseOptions options);

  // kFenced once another daemon holds the lease; OK while we do.
  Status check();
  // check() and push the expiry forward.
  Status renew();
  // Removes the lease if it is still ours (clean shutdown).
  Status release();
  bool fenced() const;
  const LeaseHolder& holder() const { return mine_; }
  int64_t ttl_ms() const { return options_.ttl_ms; }

 private:
  WriterLease(std::shared_ptr<ObjectStore> store, LeaseOptions options, LeaseHolder mine)
      : store_(std::move(store)), options_(std::move(options)), mine_(std::move(mine)) {}
  Status check_locked();

  const std::shared_ptr<ObjectStore> store_;
  const LeaseOptions options_;
  mutable std::mutex mu_;
  LeaseHolder mine_;     // GUARDED_BY(mu_) (expiry changes)
  bool fenced_ = false;  // GUARDED_BY(mu_)
};

}  // namespace portalbd
