// StatsCounters: the server's live counters, bumped by connection threads and
// read as a ServerStats snapshot (nbd/server.h).
//
// Thread-safety: relaxed atomics (the latency histograms too: no lock on the
// request path); a snapshot is not one instant across counters, which is
// fine for monitoring.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "nbd/protocol.h"
#include "nbd/server.h"

namespace portalbd::nbd {

struct StatsCounters {
  std::atomic<uint64_t> connections_total{0}, connections_active{0};
  std::atomic<uint64_t> reads{0}, writes{0}, flushes{0}, trims{0}, zeroes{0}, block_status{0}, cache{0};
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0}, errors{0};
  std::atomic<uint64_t> connections_refused{0}, payload_waits{0};
  std::atomic<uint64_t> bytes_trimmed{0}, bytes_zeroed{0}, in_flight{0};
  std::array<LatencyHistogram, kTimedCommands.size()> latency;

  // The kTimedCommands index of an NBD command type; -1 for one not timed.
  static int timed_slot(uint16_t type) {
    switch (type) {
      case proto::kCmdRead: return 0;
      case proto::kCmdWrite: return 1;
      case proto::kCmdFlush: return 2;
      case proto::kCmdTrim: return 3;
      case proto::kCmdWriteZeroes: return 4;
      case proto::kCmdBlockStatus: return 5;
      case proto::kCmdCache: return 6;
    }
    return -1;
  }

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
    s.bytes_trimmed = v(bytes_trimmed);
    s.bytes_zeroed = v(bytes_zeroed);
    s.in_flight = v(in_flight);
    for (size_t i = 0; i < latency.size(); ++i) s.latency[i] = latency[i].snapshot();
    return s;
  }
};

}  // namespace portalbd::nbd
