// render_metrics(): the daemon's numbers in the Prometheus text format, for
// GET /metrics (daemon/metrics_server.h). It reads the sources `portalctl
// status` reads (nbd::Server::stats, Volume::stats, CountingStore, the
// store's own StoreMetrics) plus the NBD latency histograms, the background
// GC's totals and the writer lease; it keeps no counters of its own.
//
// Every metric is prefixed portalbd_; label values come from fixed sets
// (commands, operations, cache kinds), so series stay bounded. The list,
// with what each means, is in docs/design.md ("Metrics").
//
// Ownership: MetricsSources borrows everything; the daemon keeps it alive
// until the metrics server has stopped. A null source leaves its metrics out.
// Thread-safety: as safe as the sources, which are all thread-safe.
#pragma once

#include <chrono>
#include <string>

namespace portalbd {

class Volume;
class ObjectStore;
class CountingStore;
class BackgroundGc;
class WriterLease;
namespace nbd {
class Server;
}

struct MetricsSources {
  Volume* volume = nullptr;
  const ObjectStore* store = nullptr;       // the store as opened (its own StoreMetrics)
  const CountingStore* requests = nullptr;  // requests reaching it, by operation
  const nbd::Server* nbd = nullptr;
  const BackgroundGc* gc = nullptr;
  const WriterLease* lease = nullptr;
  uint64_t memory_cache_capacity_bytes = 0;
  std::chrono::steady_clock::time_point started;
};

std::string render_metrics(const MetricsSources& sources);

}  // namespace portalbd
