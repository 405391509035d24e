#include "src/util/task_pool.h"

#include <doctest/doctest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "src/util/thread_name.h"

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

  TEST_CASE("a pool's threads carry its name; a name longer than Linux keeps is cut to 15 bytes") {
    auto name_of_this_thread = [] {
      char name[32] = {};
      REQUIRE(pthread_getname_np(pthread_self(), name, sizeof name) == 0);
      return std::string(name);
    };
    std::string seen;
    {
      TaskPool pool(1, "upload");
      pool.submit([&] { seen = name_of_this_thread(); });
    }  // joins: the job ran
    CHECK(seen == "upload");
    std::thread([&] {
      name_this_thread("a-name-of-twenty-chars");
      seen = name_of_this_thread();
    }).join();
    CHECK(seen == "a-name-of-twent");
  }

  TEST_CASE("a pool of zero threads runs each job inline") {
    TaskPool pool(0);
    CHECK(pool.threads() == 0);
    std::thread::id ran_on;
    pool.submit([&] { ran_on = std::this_thread::get_id(); });
    CHECK(ran_on == std::this_thread::get_id());
  }
}
