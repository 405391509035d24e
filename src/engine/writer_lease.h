// WriterLease: "one writer per volume" (DESIGN invariant 6) on any object store.
//
// The lease is one object, lock/writer.json, naming its holder (host, pid,
// start time), a random token and an expiry. Volume's flusher renews it
// every ttl/4 while segments are being written, so a writer that dies
// mid-work frees the volume within ttl_ms. An idle volume (no segment
// written since the last renewal) renews once per idle_renew_ms instead,
// with an expiry of idle_renew_ms + ttl_ms, so its claim never lapses and
// it costs storage one check and one PUT per idle_renew_ms (issue 26).
//
// Claiming (Acquire):
//   L1. No lease object: create it, with a conditional put where the store
//       enforces one (file://, memory://, S3 with If-None-Match), so of two
//       daemons starting together exactly one wins. A store that ignores
//       conditional puts (s3rver) is read first: a live lease is never
//       overwritten there either.
//   L2. A readable lease is broken only when it is provably stale: its
//       holder was on this host and its pid is gone, or its expiry passed,
//       or the operator passes take_over.
//   L3. An unreadable lease (torn or empty: s3rver keeps the part of a PUT
//       whose writer died mid-request) counts as held by an unknown writer
//       until the object is older than ttl_ms (by its last-modified time,
//       ObjectInfo::modified_unix_ms); take_over breaks it at once.
//   L4. After writing its claim, Acquire reads the object back: a racing
//       writer whose claim landed later is seen there, and this one yields
//       (kBusy). A claim that lands after the read-back is caught by the
//       first check() (L6).
//   L5. replaced_claim() says whether the claim replaced another daemon's
//       (L2/L3): that daemon may still have segment PUTs in flight, and the
//       new holder must claim the sequence numbers they may use before it
//       writes any of its own (Volume::claim_previous_writers_seqs).
//
// Writing (Volume, see volume.h U6/U7):
//   L6. check() is one GET of the lease: OK while the token is ours, kFenced
//       (sticky) once it is not. The volume calls it before every segment PUT
//       and again after a round of PUTs completes, before committing them
//       (and so before any FLUSH covering them is answered). On a
//       linearizable store the second check closes the fencing window: if it
//       still shows our token, a taker's lease write, and so its LIST of
//       storage, came after our PUT completed, and the taker replays our
//       segment.
//   L7. Renewal is a blind PUT after a check(); a renewal delayed in the
//       network past a take-over can hand the lease back to the old holder.
//       The new holder is then fenced at its next check: still one writer.
//   L8. fence() marks the lease lost without a GET: the volume found another
//       writer's object under one of its own sequence numbers.
//   L9. release() removes the lease if it is still ours (clean shutdown, or
//       a start that failed after Acquire), once; later check()s are kFenced.
//
// Clocks: expiry and the age of an unreadable lease compare the holder's or
// the store's clock with ours; they must agree to well within ttl_ms.
//
// Thread-safety: all methods are safe concurrently (one mutex, held across
// the lease's own GETs and PUTs so that check, renew and release serialize).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "src/store/object_store.h"
#include "src/util/mutex.h"

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
  // How often an idle holder renews (see above). 20 minutes: two requests
  // (a check and a PUT) per 20 minutes, one per 10 on average.
  int64_t idle_renew_ms = 20 * 60 * 1000;
  bool take_over = false;
  std::function<int64_t()> clock;  // unix ms; defaults to the system clock
  std::string host;                // defaults to gethostname()
  int64_t pid = 0;                 // defaults to getpid()
};

class WriterLease {
 public:
  static constexpr const char* kKey = "lock/writer.json";

  // Claims the volume (L1-L4), or fails with kBusy naming the holder and
  // saying what to do.
  static Result<std::unique_ptr<WriterLease>> Acquire(std::shared_ptr<ObjectStore> store, LeaseOptions options);

  // kFenced once another daemon holds the lease; OK while we do (L6).
  // kUnavailable when the lease cannot be read (storage trouble, or an
  // object torn by someone else's PUT): not a verdict, try again.
  Status check();
  // check() and push the expiry to valid_for_ms from now (0: ttl_ms).
  Status renew(int64_t valid_for_ms = 0);
  // How long our claim stays valid, as last written (negative: lapsed).
  int64_t remaining_ms() const;
  // Removes the lease if it is still ours (L9). Idempotent.
  Status release();
  // Marks the lease lost (L8) and logs it with `why`.
  void fence(const std::string& why);
  bool fenced() const;
  // True when Acquire replaced another daemon's claim (L5).
  bool replaced_claim() const { return replaced_claim_; }
  LeaseHolder holder() const {
    MutexLock lock(&mu_);
    return mine_;
  }
  int64_t ttl_ms() const { return options_.ttl_ms; }
  int64_t idle_renew_ms() const { return options_.idle_renew_ms; }

 private:
  WriterLease(std::shared_ptr<ObjectStore> store, LeaseOptions options, LeaseHolder mine, bool replaced_claim)
      : store_(std::move(store)),
        options_(std::move(options)),
        replaced_claim_(replaced_claim),
        mine_(std::move(mine)) {}
  Status check_locked() REQUIRES(mu_);

  const std::shared_ptr<ObjectStore> store_;
  const LeaseOptions options_;
  const bool replaced_claim_;
  mutable Mutex mu_;
  LeaseHolder mine_ GUARDED_BY(mu_);  // (expiry changes)
  bool fenced_ GUARDED_BY(mu_) = false;
  bool released_ GUARDED_BY(mu_) = false;
};

}  // namespace portalbd
