// PayloadBudget: the grant rules, waiting and waking, cancellation, and a
// many-thread run that must neither deadlock nor pass limit + overshoot.
#include "nbd/payload_budget.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

namespace portalbd::nbd {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// Polls `done` for up to 10 s; a condition, not a sleep, decides.
template <class F>
bool eventually(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_SUITE("nbd.payload_budget") {
  TEST_CASE("grants up to the limit, then a reader that is not the oldest waits for a release") {
    PayloadBudget budget(10 * kMiB, 4 * kMiB);
    std::atomic<bool> cancel{false};
    PayloadBudget::Claim idle = budget.start_reading();  // oldest; its client has sent nothing yet
    PayloadBudget::Claim full = budget.start_reading();
    REQUIRE(full.grow(10 * kMiB, cancel));
    full.finish_reading();
    CHECK(budget.held_bytes() == 10 * kMiB);
    PayloadBudget::Claim late = budget.start_reading();
    CHECK_FALSE(late.try_grow(kMiB));

    std::atomic<bool> granted{false};
    std::thread waiter([&] { granted = late.grow(kMiB, cancel); });
    REQUIRE(eventually([&] { return budget.waiting() == 1; }));
    CHECK_FALSE(granted.load());
    full.reset();  // the executed request gives its 10 MiB back
    waiter.join();
    CHECK(granted.load());
    CHECK(budget.held_bytes() == kMiB);
    CHECK(idle.held_bytes() == 0);
  }

  TEST_CASE("the oldest reader may pass the limit by the overshoot, the others may not") {
    PayloadBudget budget(10 * kMiB, 4 * kMiB);
    std::atomic<bool> cancel{false};
    PayloadBudget::Claim a = budget.start_reading();  // oldest
    PayloadBudget::Claim b = budget.start_reading();
    REQUIRE(a.grow(5 * kMiB, cancel));
    REQUIRE(b.grow(5 * kMiB, cancel));
    // Both are half-way through their payloads and the budget is spent: the
    // deadlock a plain semaphore would have. The oldest goes on.
    CHECK_FALSE(b.try_grow(kMiB));
    CHECK(a.try_grow(4 * kMiB));
    CHECK_FALSE(a.try_grow(1));  // never past limit + overshoot
    CHECK(budget.held_bytes() == 14 * kMiB);
    // Once `a` has its payload, `b` is the oldest reader and may pass the
    // limit too, as far as limit + overshoot allows.
    a.finish_reading();
    CHECK_FALSE(b.try_grow(kMiB));  // 15 > 14
    a.reset();
    CHECK(b.try_grow(4 * kMiB));  // 9 <= 10
    CHECK(b.try_grow(4 * kMiB));  // 13 <= 14, as the oldest
    CHECK(budget.held_bytes() == 13 * kMiB);
  }

  TEST_CASE("one request larger than the whole budget goes through alone") {
    PayloadBudget budget(2 * kMiB, 32 * kMiB);
    std::atomic<bool> cancel{false};
    PayloadBudget::Claim big = budget.start_reading();
    for (int i = 0; i < 32; ++i) REQUIRE(big.try_grow(kMiB));
    CHECK(budget.held_bytes() == 32 * kMiB);
    PayloadBudget::Claim small = budget.start_reading();
    CHECK_FALSE(small.try_grow(1));
    big.finish_reading();
    big.reset();
    CHECK(small.grow(kMiB, cancel));
  }

  TEST_CASE("a waiting reader gives up when cancelled, holding nothing more") {
    PayloadBudget budget(kMiB, kMiB);
    std::atomic<bool> cancel{false};
    PayloadBudget::Claim a = budget.start_reading();
    REQUIRE(a.grow(2 * kMiB, cancel));  // oldest: limit + overshoot
    PayloadBudget::Claim b = budget.start_reading();
    std::atomic<int> result{-1};
    std::thread waiter([&] { result = b.grow(kMiB, cancel) ? 1 : 0; });
    REQUIRE(eventually([&] { return budget.waiting() == 1; }));
    cancel = true;
    budget.wake_waiters();
    waiter.join();
    CHECK(result.load() == 0);
    CHECK(b.held_bytes() == 0);
    CHECK(budget.held_bytes() == 2 * kMiB);
  }

  TEST_CASE("claims release on destruction and move with their bytes") {
    PayloadBudget budget(8 * kMiB, kMiB);
    std::atomic<bool> cancel{false};
    {
      PayloadBudget::Claim a = budget.start_reading();
      REQUIRE(a.grow(3 * kMiB, cancel));
      a.finish_reading();
      PayloadBudget::Claim moved = std::move(a);
      CHECK(moved.held_bytes() == 3 * kMiB);
      CHECK(a.held_bytes() == 0);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
      CHECK(budget.held_bytes() == 3 * kMiB);
    }
    CHECK(budget.held_bytes() == 0);
    // A reader dropped mid-payload (its connection died) stops being the
    // oldest, so the next one may use the overshoot.
    PayloadBudget::Claim b = budget.start_reading();
    {
      PayloadBudget::Claim dropped = budget.start_reading();
      PayloadBudget::Claim c = budget.start_reading();
      REQUIRE(b.grow(8 * kMiB, cancel));
      b.finish_reading();
      CHECK_FALSE(c.try_grow(kMiB));  // `dropped` is older
    }
    PayloadBudget::Claim d = budget.start_reading();
    CHECK(d.try_grow(kMiB));  // the oldest reader now
  }

  TEST_CASE("many readers with random sizes all finish and never pass limit + overshoot") {
    constexpr uint64_t kLimit = 8 * kMiB, kOvershoot = 4 * kMiB;
    PayloadBudget budget(kLimit, kOvershoot);
    std::atomic<bool> cancel{false};
    std::atomic<uint64_t> peak{0};
    std::atomic<int> finished{0};
    constexpr int kThreads = 8, kRequests = 200;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(1000 + t);
        for (int i = 0; i < kRequests; ++i) {
          const uint64_t length = 1 + rng() % kOvershoot;
          PayloadBudget::Claim claim = budget.start_reading();
          for (uint64_t got = 0; got < length;) {
            const uint64_t step = std::min<uint64_t>(length - got, 1 + rng() % (kMiB / 2));
            if (!claim.grow(step, cancel)) return;  // never: nobody cancels; `finished` falls short
            got += step;
            uint64_t h = budget.held_bytes(), p = peak.load();
            while (h > p && !peak.compare_exchange_weak(p, h)) {
            }
            if (rng() % 4 == 0) std::this_thread::yield();
          }
          claim.finish_reading();
          if (rng() % 2 == 0) std::this_thread::yield();  // "executing"
        }
        ++finished;
      });
    }
    for (std::thread& th : threads) th.join();
    CHECK(finished.load() == kThreads);
    CHECK(peak.load() <= kLimit + kOvershoot);
    CHECK(budget.held_bytes() == 0);
  }
}

}  // namespace portalbd::nbd
