#include "src/util/latency_histogram.h"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

namespace portalbd {

TEST_SUITE("util.latency_histogram") {
  TEST_CASE("a duration lands in the first bucket whose bound holds it") {
    CHECK(LatencyHistogram::bucket_of(0) == 0);
    CHECK(LatencyHistogram::bucket_of(50'000) == 0);  // bounds are inclusive (le)
    CHECK(LatencyHistogram::bucket_of(50'001) == 1);
    CHECK(LatencyHistogram::bucket_of(1'000'000) == 4);
    CHECK(LatencyHistogram::bucket_of(10'000'000'000) == HistogramSnapshot::kNumBounds - 1);
    CHECK(LatencyHistogram::bucket_of(10'000'000'001) == HistogramSnapshot::kNumBounds);  // +Inf
  }

  TEST_CASE("bounds grow strictly") {
    for (size_t i = 1; i < HistogramSnapshot::kNumBounds; ++i) {
      CHECK(HistogramSnapshot::kBoundsNs[i] > HistogramSnapshot::kBoundsNs[i - 1]);
    }
  }

  TEST_CASE("a snapshot counts, sums and accumulates") {
    LatencyHistogram h;
    h.record_ns(10'000);                     // bucket 0
    h.record_ns(70'000);                     // bucket 1
    h.record_ns(70'000);                     // bucket 1
    h.record(std::chrono::seconds(60));      // +Inf
    h.record(std::chrono::nanoseconds(-5));  // a clock step back counts as 0
    HistogramSnapshot s = h.snapshot();
    CHECK(s.count() == 5);
    CHECK(s.buckets[0] == 2);
    CHECK(s.buckets[1] == 2);
    CHECK(s.buckets[HistogramSnapshot::kNumBounds] == 1);
    CHECK(s.sum_ns == 10'000 + 140'000 + 60'000'000'000ull);
    CHECK(s.cumulative(0) == 2);
    CHECK(s.cumulative(1) == 4);
    CHECK(s.cumulative(HistogramSnapshot::kNumBounds - 1) == 4);
    CHECK(s.cumulative(HistogramSnapshot::kNumBounds) == 5);
  }

  TEST_CASE("records from many threads are all counted") {
    LatencyHistogram h;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&h, t] {
        for (int i = 0; i < 10000; ++i) h.record_ns(static_cast<uint64_t>(t) * 1'000'000 + 1);
      });
    }
    for (auto& t : threads) t.join();
    HistogramSnapshot s = h.snapshot();
    CHECK(s.count() == 40000);
    CHECK(s.sum_ns == 10000ull * (1 + 1'000'001 + 2'000'001 + 3'000'001));
  }
}

}  // namespace portalbd
