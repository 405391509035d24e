#include "nbd/payload_budget.h"

#include <cassert>
#include <utility>

namespace portalbd::nbd {

PayloadBudget::Claim& PayloadBudget::Claim::operator=(Claim&& other) noexcept {
  if (this != &other) {
    reset();
    budget_ = std::exchange(other.budget_, nullptr);
    ticket_ = std::exchange(other.ticket_, 0);
    held_bytes_ = std::exchange(other.held_bytes_, 0);
    reading_ = std::exchange(other.reading_, false);
  }
  return *this;
}

bool PayloadBudget::Claim::grow(uint64_t n, const std::atomic<bool>& cancelled) {
  assert(budget_ != nullptr && reading_);
  PayloadBudget& b = *budget_;
  MutexLock lock(&b.mu_);
  if (!b.grantable_locked(*this, n)) {
    ++b.waiting_;
    while (!cancelled.load(std::memory_order_acquire) && !b.grantable_locked(*this, n)) b.released_.wait(lock);
    --b.waiting_;
    if (!b.grantable_locked(*this, n)) return false;  // cancelled
  }
  b.held_bytes_ += n;
  held_bytes_ += n;
  return true;
}

bool PayloadBudget::Claim::try_grow(uint64_t n) {
  assert(budget_ != nullptr && reading_);
  PayloadBudget& b = *budget_;
  MutexLock lock(&b.mu_);
  if (!b.grantable_locked(*this, n)) return false;
  b.held_bytes_ += n;
  held_bytes_ += n;
  return true;
}

void PayloadBudget::Claim::finish_reading() {
  if (budget_ == nullptr || !reading_) return;
  {
    MutexLock lock(&budget_->mu_);
    budget_->readers_.erase(ticket_);
    reading_ = false;
  }
  // The oldest reader may have changed: rule 2 may now grant someone.
  budget_->released_.notify_all();
}

void PayloadBudget::Claim::reset() {
  if (budget_ == nullptr) return;
  budget_->release(*this);
  budget_ = nullptr;
}

PayloadBudget::Claim PayloadBudget::start_reading() {
  Claim claim;
  claim.budget_ = this;
  claim.reading_ = true;
  MutexLock lock(&mu_);
  claim.ticket_ = next_ticket_++;
  readers_.insert(claim.ticket_);
  return claim;
}

void PayloadBudget::release(Claim& claim) {
  {
    MutexLock lock(&mu_);
    assert(held_bytes_ >= claim.held_bytes_);
    held_bytes_ -= claim.held_bytes_;
    if (claim.reading_) readers_.erase(claim.ticket_);
  }
  claim.held_bytes_ = 0;
  claim.reading_ = false;
  released_.notify_all();
}

void PayloadBudget::wake_waiters() {
  // Taking the mutex orders this after the caller's store to `cancelled`
  // with respect to a waiter's check of it: no wake-up is lost.
  { MutexLock lock(&mu_); }
  released_.notify_all();
}

bool PayloadBudget::grantable_locked(const Claim& claim, uint64_t n) const {
  if (held_bytes_ + n <= limit_bytes_) return true;                          // rule 1
  const bool oldest = claim.reading_ && *readers_.begin() == claim.ticket_;  // a reading claim is in readers_
  return oldest && held_bytes_ + n <= limit_bytes_ + overshoot_bytes_;       // rule 2
}

uint64_t PayloadBudget::held_bytes() const {
  MutexLock lock(&mu_);
  return held_bytes_;
}

uint32_t PayloadBudget::waiting() const {
  MutexLock lock(&mu_);
  return waiting_;
}

}  // namespace portalbd::nbd
