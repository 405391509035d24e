// PayloadBudget: the WRITE payload bytes the whole NBD server holds in memory
// at once, shared by every connection. A connection's reader claims bytes as
// they arrive from the socket, before it grows the payload buffer for them,
// and the claim is released once the request has been executed. When the
// budget is spent the reader waits (back-pressure on that client's socket);
// it never allocates first. Without this, 100 clients that each send a WRITE
// header claiming 32 MiB drive the daemon to gigabytes (issue 18).
//
// Grant rule, for a claim asking for n more bytes while the server holds
// `held` bytes in all:
//
//   1. held + n <= limit                                   -> granted
//   2. the claim is the oldest one still reading its payload,
//      and held + n <= limit + overshoot                   -> granted
//   otherwise the reader waits for a release.
//
// Invariants (REQUIRES: overshoot >= the largest payload a claim will hold;
// the server passes max_request_bytes):
//   I1. held <= limit + overshoot. Only the oldest reader may pass `limit`.
//       A request larger than the whole budget still goes through: it waits
//       until it is the oldest reader, then rule 2 lets it alone past `limit`.
//   I2. No deadlock. Claims that finished reading release without waiting
//       for anything here. Readers other than the oldest were only ever
//       granted under rule 1 (and a reader that is the oldest stays so until
//       it finishes, since tickets only grow), so together they hold at most
//       `limit`. Once the finished claims are released, the oldest reader,
//       which needs at most `overshoot` in all, is granted by rule 2. So the
//       oldest reader always progresses, as long as its client sends.
//   I3. A reader that waits holds only what its own payload already used:
//       never bytes of a request it has not begun (claims start empty and
//       grow only as bytes are about to be read).
//
// Thread-safety: every method may be called from any thread. A Claim is owned
// by one thread at a time (the reader, then the worker that executes it).
// Ownership: the budget must outlive every Claim taken from it (the Server
// joins its connections before destroying it).
#pragma once

#include <atomic>
#include <cstdint>
#include <set>

#include "src/util/mutex.h"

namespace portalbd::nbd {

class PayloadBudget {
 public:
  // limit_bytes: what the server may hold; overshoot_bytes: how far past it
  // the oldest reader may go (one request's worth).
  PayloadBudget(uint64_t limit_bytes, uint64_t overshoot_bytes)
      : limit_bytes_(limit_bytes), overshoot_bytes_(overshoot_bytes) {}
  PayloadBudget(const PayloadBudget&) = delete;
  PayloadBudget& operator=(const PayloadBudget&) = delete;

  // One request's share of the budget. Movable, releases what it holds when
  // destroyed (or reset()).
  class Claim {
   public:
    Claim() = default;  // holds nothing, belongs to no budget
    Claim(Claim&& other) noexcept { *this = std::move(other); }
    Claim& operator=(Claim&& other) noexcept;
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    ~Claim() { reset(); }

    // Adds `n` bytes to the claim, waiting until the grant rule allows it.
    // False (nothing added) once `cancelled` is true: the caller sets it and
    // then calls PayloadBudget::wake_waiters().
    // REQUIRES: the claim came from start_reading() and is still reading.
    [[nodiscard]] bool grow(uint64_t n, const std::atomic<bool>& cancelled);
    // grow() without waiting: false when the bytes are not available now.
    [[nodiscard]] bool try_grow(uint64_t n);
    // The payload is read: the claim stops competing as a reader (so the
    // next oldest may use rule 2) but keeps its bytes until reset().
    void finish_reading();
    // Releases every byte and leaves the claim empty.
    void reset();

    uint64_t held_bytes() const { return held_bytes_; }

   private:
    friend class PayloadBudget;
    PayloadBudget* budget_ = nullptr;
    uint64_t ticket_ = 0;  // arrival order among readers
    uint64_t held_bytes_ = 0;
    bool reading_ = false;
  };

  // A new, empty claim for a payload about to be read; it queues behind the
  // readers that started before it.
  Claim start_reading() EXCLUDES(mu_);

  // Wakes every waiting grow() so it can look at its `cancelled` flag.
  void wake_waiters() EXCLUDES(mu_);

  uint64_t limit_bytes() const { return limit_bytes_; }
  uint64_t held_bytes() const EXCLUDES(mu_);
  // Readers blocked in grow() right now (for tests and diagnostics).
  uint32_t waiting() const EXCLUDES(mu_);

 private:
  bool grantable_locked(const Claim& claim, uint64_t n) const REQUIRES(mu_);
  void release(Claim& claim) EXCLUDES(mu_);

  const uint64_t limit_bytes_;
  const uint64_t overshoot_bytes_;

  mutable Mutex mu_;
  CondVar released_;                            // bytes were released, or the oldest reader changed
  uint64_t held_bytes_ GUARDED_BY(mu_) = 0;     // sum over all claims
  std::set<uint64_t> readers_ GUARDED_BY(mu_);  // tickets of claims still reading
  uint64_t next_ticket_ GUARDED_BY(mu_) = 1;
  uint32_t waiting_ GUARDED_BY(mu_) = 0;
};

}  // namespace portalbd::nbd
