#include "daemon/metrics_collector.h"

#include <string_view>

#include "daemon/background_gc.h"
#include "nbd/server.h"
#include "src/config/version.h"
#include "src/engine/volume.h"
#include "src/engine/writer_lease.h"
#include "src/store/counting_store.h"
#include "src/store/object_store.h"
#include "src/util/prometheus_text.h"

namespace portalbd {
namespace {

using C = MetricType;

double seconds_from_ms(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

void nbd_metrics(PrometheusText& w, const nbd::Server& server) {
  const nbd::ServerStats s = server.stats();
  w.family("portalbd_nbd_requests_total", C::kCounter, "NBD requests dispatched, by command (failed ones included)");
  const std::pair<const char*, uint64_t> requests[] = {{"read", s.reads},          {"write", s.writes},
                                                       {"flush", s.flushes},       {"trim", s.trims},
                                                       {"write_zeroes", s.zeroes}, {"block_status", s.block_status},
                                                       {"cache", s.cache}};
  for (auto [command, n] : requests) w.sample({{"command", command}}, static_cast<double>(n));
  w.family("portalbd_nbd_request_errors_total", C::kCounter, "NBD requests answered with an error, all commands");
  w.sample(static_cast<double>(s.errors));
  w.family("portalbd_nbd_bytes_total", C::kCounter,
           "bytes of NBD requests answered OK, by command (read/write: data moved; trim/write_zeroes: range length)");
  const std::pair<const char*, uint64_t> bytes[] = {
      {"read", s.bytes_read}, {"write", s.bytes_written}, {"trim", s.bytes_trimmed}, {"write_zeroes", s.bytes_zeroed}};
  for (auto [command, n] : bytes) w.sample({{"command", command}}, static_cast<double>(n));
  w.family("portalbd_nbd_request_duration_seconds", C::kHistogram,
           "NBD request latency, from dispatch to the reply written, by command");
  for (size_t i = 0; i < nbd::kTimedCommands.size(); ++i) {
    w.histogram({{"command", nbd::kTimedCommands[i]}}, s.latency[i]);
  }
  w.family("portalbd_nbd_requests_in_flight", C::kGauge, "NBD requests being executed now");
  w.sample(static_cast<double>(s.in_flight));
  w.family("portalbd_nbd_connections", C::kGauge, "NBD connections open now");
  w.sample(static_cast<double>(s.connections_active));
  w.family("portalbd_nbd_connections_total", C::kCounter, "NBD connections accepted");
  w.sample(static_cast<double>(s.connections_total));
  w.family("portalbd_nbd_connections_refused_total", C::kCounter, "NBD connections closed at max_connections");
  w.sample(static_cast<double>(s.connections_refused));
  w.family("portalbd_nbd_payload_waits_total", C::kCounter, "times a reader waited for the WRITE payload budget");
  w.sample(static_cast<double>(s.payload_waits));
  w.family("portalbd_nbd_payload_held_bytes", C::kGauge, "WRITE payload bytes held in memory now");
  w.sample(static_cast<double>(s.payload_bytes_held));
}

void volume_metrics(PrometheusText& w, Volume& volume, uint64_t memory_cache_capacity_bytes) {
  const VolumeStats v = volume.stats();
  auto gauge = [&w](const char* name, const char* help, double value) {
    w.family(name, C::kGauge, help);
    w.sample(value);
  };
  auto counter = [&w](const char* name, const char* help, uint64_t value) {
    w.family(name, C::kCounter, help);
    w.sample(static_cast<double>(value));
  };
  gauge("portalbd_volume_size_bytes", "size of the volume", static_cast<double>(v.size_bytes));
  gauge("portalbd_write_buffer_dirty_bytes", "written and answered, not yet durable in object storage (upload queue)",
        static_cast<double>(v.dirty_bytes));
  counter("portalbd_volume_flushes_total", "flushes of the write buffer (FLUSH, FUA, timer, full buffer, snapshot)",
          v.flushes);
  counter("portalbd_volume_flushes_grouped_total", "flushes answered by another caller's upload (group commit)",
          v.flushes_grouped);
  counter("portalbd_volume_flush_errors_total", "flushes that failed", v.flush_errors);
  counter("portalbd_segments_uploaded_total", "segment objects uploaded by this process", v.segments_written);
  counter("portalbd_uploaded_bytes_total", "bytes of segment objects uploaded by this process", v.bytes_uploaded);
  gauge("portalbd_segments", "segment objects in the index", static_cast<double>(v.segments));
  gauge("portalbd_stored_bytes", "bytes of the segment objects in the index (what storage holds)",
        static_cast<double>(v.bytes_stored));
  gauge("portalbd_live_bytes", "data bytes a root or reader still reaches (the rest is garbage)",
        static_cast<double>(v.bytes_live));
  gauge("portalbd_storage_failing", "1 while uploads to object storage fail, else 0",
        v.storage_failing_since_unix_ms != 0 ? 1 : 0);
  gauge("portalbd_storage_failing_since_timestamp_seconds",
        "Unix time the current streak of storage failures began (0: not failing)",
        seconds_from_ms(v.storage_failing_since_unix_ms));
  gauge("portalbd_last_checkpoint_timestamp_seconds", "Unix time of the newest index checkpoint (0: none yet)",
        seconds_from_ms(v.last_checkpoint_unix_ms));
  counter("portalbd_replayed_segments_total", "segments applied from storage at open", v.replayed_segments);

  w.family("portalbd_cache_hits_total", C::kCounter, "reads of frames found in a cache, by cache");
  w.sample({{"cache", "memory"}}, static_cast<double>(v.cache_hits));
  if (v.disk_cache) w.sample({{"cache", "disk"}}, static_cast<double>(v.disk.hits));
  w.family("portalbd_cache_misses_total", C::kCounter, "reads of frames a cache did not hold, by cache");
  w.sample({{"cache", "memory"}}, static_cast<double>(v.cache_misses));
  if (v.disk_cache) w.sample({{"cache", "disk"}}, static_cast<double>(v.disk.misses));
  w.family("portalbd_cache_bytes", C::kGauge, "bytes a cache holds now, by cache");
  w.sample({{"cache", "memory"}}, static_cast<double>(v.cache_bytes));
  if (v.disk_cache) w.sample({{"cache", "disk"}}, static_cast<double>(v.disk.bytes));
  w.family("portalbd_cache_capacity_bytes", C::kGauge, "most bytes a cache holds, by cache");
  w.sample({{"cache", "memory"}}, static_cast<double>(memory_cache_capacity_bytes));
  if (v.disk_cache) w.sample({{"cache", "disk"}}, static_cast<double>(v.disk.capacity_bytes));
  if (v.disk_cache) {
    counter("portalbd_disk_cache_inserts_total", "frames written to the disk cache", v.disk.inserts);
    counter("portalbd_disk_cache_evictions_total", "frames evicted from the disk cache", v.disk.evictions);
    counter("portalbd_disk_cache_crc_drops_total", "cached frames that failed their checksum (fetched again)",
            v.disk.crc_drops);
    counter("portalbd_disk_cache_io_errors_total", "disk cache reads or writes that failed", v.disk.io_errors);
    counter("portalbd_disk_cache_dropped_total", "cached frames of segments GC deleted, dropped", v.disk.dropped);
    counter("portalbd_disk_cache_skipped_total", "frames not kept: the disk cache's writer was behind", v.disk.skipped);
    gauge("portalbd_disk_cache_pending_bytes", "fetched or uploaded bytes the disk cache has yet to write",
          static_cast<double>(v.disk.pending_bytes));
  }

  counter("portalbd_fetch_gets_total", "ranged GETs issued for frames no cache held", v.fetch.gets);
  counter("portalbd_fetch_bytes_total", "stored bytes those GETs returned", v.fetch.bytes_fetched);
  counter("portalbd_fetch_disk_hits_total", "frames the fetcher read from the disk cache", v.fetch.disk_hits);
  counter("portalbd_fetch_joined_total", "frames a reader waited for instead of fetching again", v.fetch.joined);
  counter("portalbd_fetch_prefetched_total", "frames read-ahead brought in", v.fetch.prefetched);
  counter("portalbd_fetch_prefetch_dropped_total", "read-ahead frames over the budget, not fetched",
          v.fetch.prefetch_dropped);
  counter("portalbd_fetch_cached_reads_total", "frames read from cached file pages without a hand-off",
          v.fetch.cached_reads);
  counter("portalbd_fetch_timeouts_total", "reads that gave up waiting for their frames (EIO)", v.fetch.timeouts);
  gauge("portalbd_fetch_in_flight", "fetch jobs running now", static_cast<double>(v.fetch.in_flight));

  if (v.journal) {
    gauge("portalbd_upload_lag_seconds", "age of the oldest journaled write not yet in object storage",
          static_cast<double>(v.upload_lag_ms) / 1000.0);
    gauge("portalbd_journal_used_bytes", "journal bytes in use", static_cast<double>(v.journal_used_bytes));
    gauge("portalbd_journal_capacity_bytes", "journal capacity", static_cast<double>(v.journal_capacity_bytes));
    counter("portalbd_journal_syncs_total", "journal syncs (FLUSH and FUA answered from the journal)", v.journal_syncs);
    counter("portalbd_journal_fdatasyncs_total", "fdatasync calls on the journal", v.journal_fdatasyncs);
    counter("portalbd_journal_direct_writes_total", "writes that skipped the journal (large writes)",
            v.journal_direct_writes);
  }

  auto snapshots = volume.list_snapshots();
  if (snapshots.ok()) gauge("portalbd_snapshots", "snapshots of the volume", static_cast<double>(snapshots->size()));
}

// Requests the CountingStore saw, by bucket (volume, lease) and operation.
void store_request_metrics(PrometheusText& w, const CountingStore& requests) {
  const std::pair<const char*, CountingStore::Bucket> buckets[] = {{"volume", CountingStore::kVolume},
                                                                   {"lease", CountingStore::kLease}};
  w.family("portalbd_store_requests_total", C::kCounter,
           "requests sent to object storage, by operation and by whose (the volume's or the writer lease's)");
  for (auto [name, bucket] : buckets) {
    const StoreRequestCounts c = requests.counts(bucket);
    const uint64_t by_op[CountingStore::kNumOperations] = {c.put,  c.put_if_absent, c.get,   c.get_range,
                                                           c.head, c.list,          c.remove};
    for (unsigned op = 0; op < CountingStore::kNumOperations; ++op) {
      w.sample({{"owner", name}, {"operation", CountingStore::kOperationNames[op]}}, static_cast<double>(by_op[op]));
    }
  }
  w.family("portalbd_store_request_errors_total", C::kCounter,
           "requests to object storage that failed (a missing key or a lost conditional PUT is an answer, not a "
           "failure), by owner and operation");
  for (auto [name, bucket] : buckets) {
    for (unsigned op = 0; op < CountingStore::kNumOperations; ++op) {
      const auto operation = static_cast<CountingStore::Operation>(op);
      w.sample({{"owner", name}, {"operation", CountingStore::kOperationNames[op]}},
               static_cast<double>(requests.errors(bucket, operation)));
    }
  }
  w.family("portalbd_store_request_duration_seconds", C::kHistogram,
           "object storage request latency (retries inside the S3 store included), by operation; a segment upload "
           "is one put");
  for (unsigned op = 0; op < CountingStore::kNumOperations; ++op) {
    w.histogram({{"operation", CountingStore::kOperationNames[op]}},
                requests.latency(static_cast<CountingStore::Operation>(op)));
  }
  w.family("portalbd_store_bytes_total", C::kCounter,
           "bytes sent to object storage (out: PUT bodies) and received (in: GET bodies), by owner");
  for (auto [name, bucket] : buckets) {
    const StoreRequestCounts c = requests.counts(bucket);
    w.sample({{"owner", name}, {"direction", "out"}}, static_cast<double>(c.bytes_out));
    w.sample({{"owner", name}, {"direction", "in"}}, static_cast<double>(c.bytes_in));
  }
}

// The store's own counters (S3: HTTP requests by method, bytes, retries,
// errors) as portalbd_<store>_...: requests_X and bytes_X become labels.
void store_own_metrics(PrometheusText& w, const StoreMetrics& m) {
  if (!PrometheusText::valid_label_name(m.name)) return;
  const std::string base = "portalbd_" + m.name + "_";
  bool requests_open = false;
  for (const auto& [name, value] : m.counters) {
    if (name.rfind("requests_", 0) != 0) continue;
    if (!requests_open) {
      w.family(base + "requests_total", C::kCounter, m.name + " requests sent (retries included), by method");
      requests_open = true;
    }
    w.sample({{"method", name.substr(9)}}, static_cast<double>(value));
  }
  bool bytes_open = false;
  for (const auto& [name, value] : m.counters) {
    if (name.rfind("bytes_", 0) != 0) continue;
    if (!bytes_open) {
      w.family(base + "bytes_total", C::kCounter, m.name + " bytes moved, by direction");
      bytes_open = true;
    }
    w.sample({{"direction", name.substr(6)}}, static_cast<double>(value));
  }
  for (const auto& [name, value] : m.counters) {
    if (name.rfind("requests_", 0) == 0 || name.rfind("bytes_", 0) == 0) continue;
    w.family(base + name + "_total", C::kCounter, m.name + " " + name);
    w.sample(static_cast<double>(value));
  }
}

void gc_metrics(PrometheusText& w, const BackgroundGc& gc) {
  const BackgroundGc::Totals t = gc.totals();
  w.family("portalbd_gc_passes_total", C::kCounter, "background GC timer ticks, by outcome");
  w.sample({{"result", "run"}}, static_cast<double>(gc.passes_run() - t.passes_failed));
  w.sample({{"result", "failed"}}, static_cast<double>(t.passes_failed));
  w.sample({{"result", "skipped"}}, static_cast<double>(gc.passes_skipped()));
  w.family("portalbd_gc_deleted_segments_total", C::kCounter, "segments background GC deleted");
  w.sample(static_cast<double>(t.segments_deleted));
  w.family("portalbd_gc_reclaimed_bytes_total", C::kCounter, "bytes of segments background GC deleted");
  w.sample(static_cast<double>(t.bytes_deleted));
  w.family("portalbd_gc_rewritten_segments_total", C::kCounter, "sparse segments background GC rewrote");
  w.sample(static_cast<double>(t.segments_rewritten));
  w.family("portalbd_gc_rewritten_bytes_total", C::kCounter, "live bytes background GC copied out of them");
  w.sample(static_cast<double>(t.bytes_rewritten));
}

void lease_metrics(PrometheusText& w, const WriterLease& lease) {
  const bool fenced = lease.fenced();
  const int64_t remaining_ms = lease.remaining_ms();
  const char* state = fenced ? "fenced" : remaining_ms > 0 ? "held" : "lapsed";
  w.family("portalbd_lease_state", C::kGauge,
           "the writer lease: 1 for the state it is in (held; lapsed: not renewed in time; fenced: another daemon "
           "took over)");
  for (const char* s : {"held", "lapsed", "fenced"}) w.sample({{"state", s}}, std::string_view(s) == state ? 1 : 0);
  w.family("portalbd_lease_remaining_seconds", C::kGauge, "how long the writer lease stays valid, as last written");
  w.sample(seconds_from_ms(remaining_ms));
}

}  // namespace

std::string render_metrics(const MetricsSources& src) {
  PrometheusText w;
  w.family("portalbd_build_info", C::kGauge, "1, labelled with the portalbd version");
  w.sample({{"version", kVersion}}, 1);
  w.family("portalbd_uptime_seconds", C::kGauge, "seconds since the daemon started");
  w.sample(std::chrono::duration<double>(std::chrono::steady_clock::now() - src.started).count());
  if (src.nbd != nullptr) nbd_metrics(w, *src.nbd);
  if (src.volume != nullptr) volume_metrics(w, *src.volume, src.memory_cache_capacity_bytes);
  if (src.requests != nullptr) store_request_metrics(w, *src.requests);
  if (src.store != nullptr) {
    if (const std::optional<StoreMetrics> m = src.store->metrics()) store_own_metrics(w, *m);
  }
  if (src.gc != nullptr) gc_metrics(w, *src.gc);
  if (src.lease != nullptr) lease_metrics(w, *src.lease);
  return w.take();
}

}  // namespace portalbd
