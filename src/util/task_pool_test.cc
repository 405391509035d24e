#include "src/util/task_pool.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

using namespace portalbd;

TEST_SUITE("util.task_pool") {
  TEST_CASE("a pool of N threads runs N jobs at once, and no more") {
    constexpr int kThreads = 3;
    std::mutex mu;
    std::condition_variable cv;
    int running = 0, max_running = 0, finished = 0;
    bool release = false;
    {
      TaskPool pool(kThreads);
      CHECK(pool.threads() == kThreads);
      for (int i = 0; i < 2 * kThreads; ++i) {
        pool.submit([&] {
          std::unique_lock lock(mu);
          max_running = std::max(max_running, ++running);
          cv.notify_all();
          cv.wait(lock, [&] { return release; });
          --running;
          ++finished;
        });
      }
      std::unique_lock lock(mu);
      // Every worker holds a job; the others wait in the queue.
      REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return running == kThreads; }));
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      lock.lock();
      CHECK(running == kThreads);
      release = true;
      cv.notify_all();
    }  // the destructor runs what is queued, then joins
    CHECK(finished == 2 * kThreads);
    CHECK(max_running == kThreads);
  }

  TEST_CASE("a pool of zero threads runs each job inline") {
    TaskPool pool(0);
    CHECK(pool.threads() == 0);
    std::thread::id ran_on;
    pool.submit([&] { ran_on = std::this_thread::get_id(); });
    CHECK(ran_on == std::this_thread::get_id());
  }
}
