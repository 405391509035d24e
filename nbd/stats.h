// StatsCounters: the server's live counters, bumped by connection threads and
// read as a ServerStats snapshot (nbd/server.h).
//
// Thread-safety: relaxed atomics; a snapshot is not one instant across
// counters, which is fine for monitoring.
#pragma once

#include <atomic>
#include <cstdint>

#include "nbd/server.h"

namespace portalbd::nbd {

struct StatsCounters {
  std::atomic<uint64_t> connections_total{0}, connections_active{0};
  std::atomic<uint64_t> reads{0}, writes{0}, flushes{0}, trims{0}, zeroes{0}, block_status{0}, cache{0};
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0}, errors{0};
  std::atomic<uint64_t> connections_refused{0}, payload_waits{0};

  static void add(std::atomic<uint64_t>& counter, uint64_t n = 1) { counter.fetch_add(n, std::memory_order_relaxed); }

  ServerStats snapshot() const {
    auto v = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    ServerStats s;
    s.connections_total = v(connections_total);
    s.connections_active = v(connections_active);
    s.reads = v(reads);
    s.writes = v(writes);
    s.flushes = v(flushes);
    s.trims = v(trims);
    s.zeroes = v(zeroes);
    s.block_status = v(block_status);
    s.cache = v(cache);
    s.bytes_read = v(bytes_read);
    s.bytes_written = v(bytes_written);
    s.errors = v(errors);
    s.connections_refused = v(connections_refused);
    s.payload_waits = v(payload_waits);
    return s;
  }
};

}  // namespace portalbd::nbd
