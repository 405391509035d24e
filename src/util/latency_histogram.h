// LatencyHistogram: counts durations into fixed buckets, for the Prometheus
// endpoint (daemon/metrics_collector.h). Recording is a few relaxed atomic
// adds and a short scan of the bounds: cheap enough for every NBD request.
//
// The bucket bounds are fixed at compile time (kBoundsNs, 50 us to 10 s, about
// 1-2.5-5 per decade) so every histogram of the process can be summed or
// compared bucket by bucket; a duration above the last bound lands in the
// overflow bucket (Prometheus's le="+Inf").
//
// Thread-safety: record() and snapshot() may run on any threads at once. A
// snapshot taken while records run may miss the newest of them; each bucket
// count is exact, and the snapshot's count is the sum of its buckets, so its
// cumulative buckets always end at its count. sum_ns may be a record or two
// ahead of or behind the buckets.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace portalbd {

// What a histogram held at one moment. buckets[i] counts durations d with
// kBoundsNs[i-1] < d <= kBoundsNs[i]; the last counts those above every bound.
struct HistogramSnapshot {
  static constexpr size_t kNumBounds = 17;
  static constexpr std::array<uint64_t, kNumBounds> kBoundsNs = {
      50'000,      100'000,       250'000,       500'000,       1'000'000,     2'500'000,
      5'000'000,   10'000'000,    25'000'000,    50'000'000,    100'000'000,   250'000'000,
      500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};

  std::array<uint64_t, kNumBounds + 1> buckets{};
  uint64_t sum_ns = 0;

  uint64_t count() const {
    uint64_t n = 0;
    for (uint64_t b : buckets) n += b;
    return n;
  }
  // Durations at or below kBoundsNs[i] (i < kNumBounds), or all of them
  // (i == kNumBounds): Prometheus's cumulative `le` buckets.
  uint64_t cumulative(size_t i) const {
    uint64_t n = 0;
    for (size_t j = 0; j <= i && j < buckets.size(); ++j) n += buckets[j];
    return n;
  }
};

class LatencyHistogram {
 public:
  // The bucket index of a duration of `ns` nanoseconds.
  static size_t bucket_of(uint64_t ns) {
    size_t i = 0;
    while (i < HistogramSnapshot::kNumBounds && ns > HistogramSnapshot::kBoundsNs[i]) ++i;
    return i;
  }

  void record_ns(uint64_t ns) {
    buckets_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  void record(std::chrono::steady_clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    record_ns(ns > 0 ? static_cast<uint64_t>(ns) : 0);
  }

  HistogramSnapshot snapshot() const {
    HistogramSnapshot s;
    for (size_t i = 0; i < buckets_.size(); ++i) s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::array<std::atomic<uint64_t>, HistogramSnapshot::kNumBounds + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace portalbd
