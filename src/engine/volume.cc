// Volume: construction, open's sequence of steps, the life cycle (close),
// flush and stats. Reads and writes are in volume_io.cc, snapshots in
// volume_snapshot.cc, the steps of open in volume_open.cc and beside it.
#include "src/engine/volume.h"

#include <algorithm>
#include <random>

#include "src/engine/gc.h"
#include "src/log/log.h"

namespace portalbd {

Volume::Volume(std::shared_ptr<ObjectStore> store, VolumeOptions opts)
    : store_(std::move(store)), opts_(std::move(opts)), cache_(opts_.cache_bytes) {
  // Who stores this volume's segments from now on (SegmentFooter::writer).
  uint64_t writer = 0;
  while (writer == 0) writer = std::random_device{}() * (uint64_t{1} << 32) + std::random_device{}();
  pipeline_.set_writer(writer);
  pipeline_.set_roots_writer([this] {
    pipeline_.upload_mu().assert_held();  // the pipeline calls it with the upload lock held
    return write_roots_record();
  });
}

Result<std::shared_ptr<Volume>> Volume::Open(std::shared_ptr<ObjectStore> store, VolumeOptions opts) {
  if (opts.read_only && (opts.lease || opts.repair || !opts.journal_dir.empty() || opts.ephemeral)) {
    return Status::InvalidArgument("a read-only volume takes no lease, repair, journal or ephemeral store");
  }
  std::shared_ptr<Volume> v(new Volume(std::move(store), std::move(opts)));
  PBD_RETURN_IF_ERROR(v->open_manifest());
  v->open_read_path();
  PBD_RETURN_IF_ERROR(v->open_index());
  PBD_RETURN_IF_ERROR(v->rebuild_index_if_behind_storage());
  PBD_RETURN_IF_ERROR(v->replay_storage());
  PBD_RETURN_IF_ERROR(v->open_journal());                 // before anything is stored: it may adopt a writer id
  PBD_RETURN_IF_ERROR(v->claim_previous_writers_seqs());  // after a take-over only
  PBD_RETURN_IF_ERROR(v->load_layers());
  PBD_RETURN_IF_ERROR(v->check_stored_references());
  PBD_RETURN_IF_ERROR(v->check_size_covers_data());
  PBD_RETURN_IF_ERROR(v->replay_journal());
  v->pipeline_.start(v->index_.get());
  if (v->opts_.lease) {
    v->lease_keeper_ =
        std::make_unique<LeaseKeeper>(v->opts_.lease, [raw = v.get()] { return raw->pipeline_.segments_written(); });
    v->lease_keeper_->start();
  }
  v->layers_.set_flatten_min_depth(v->opts_.flatten_min_depth);
  v->flattener_ = std::make_unique<Flattener>([raw = v.get()] {
    return raw->layers_.flatten_step(4096, [raw](const Layer& l) {
      raw->layers_.mu().assert_held();  // flatten_step calls it under the engine mutex
      return raw->pipeline_.has_uncommitted_locked(l);
    });
  });
  if (v->repaired_) PBD_RETURN_IF_ERROR(v->settle_repair());
  if (v->journal_ && v->opts_.journal_drain) PBD_RETURN_IF_ERROR(v->drain_journal());
  return v;
}

void Volume::open_read_path() {
  if (opts_.disk_cache_bytes > 0 && !opts_.disk_cache_dir.empty() && !opts_.ephemeral) {
    // The uuid tells a volume recreated at the same URL (its seqs start over) from this one.
    auto cache = DiskFrameCache::Open({opts_.disk_cache_dir, opts_.disk_cache_bytes, store_->url() + " " + uuid_});
    if (cache.ok()) {
      disk_cache_ = std::move(*cache);
    } else {
      log::get("engine")->warn("disk cache off: it could not be opened dir={} error={}", opts_.disk_cache_dir,
                               log::quote(cache.status().ToString()));
    }
  }
  if (disk_cache_) {
    // Written data is often read back soon: keep uploaded frames too, as
    // stored, written by the cache's own thread (the commit does not wait).
    pipeline_.set_stored_hook(
        [cache = disk_cache_.get()](uint64_t seq, const std::shared_ptr<const std::vector<std::byte>>& object,
                                    const std::vector<FrameRef>& frames) { cache->put_object(seq, object, frames); });
  }
  FrameFetcherOptions fo;
  fo.concurrency = opts_.fetch_concurrency;
  fo.read_timeout_ms = opts_.flush_timeout_ms;
  fo.local_store = store_->url().rfind("file://", 0) == 0;
  // Room for two windows of every stream's read-ahead at its largest, within reason.
  fo.prefetch_budget_bytes = std::clamp<uint64_t>(2 * opts_.read_ahead_bytes, 8ull << 20, 256ull << 20);
  fetcher_ = std::make_unique<FrameFetcher>(
      store_.get(), &cache_, disk_cache_.get(),
      [this](uint64_t seq, const FrameRef& ref, std::span<const std::byte> stored, std::shared_ptr<const void> owner) {
        return decode_and_cache(seq, ref, stored, std::move(owner));
      },
      fo);
  // An ephemeral volume's reads are memory copies: nothing to read ahead.
  if (opts_.read_ahead_bytes > 0 && !opts_.ephemeral) {
    streams_ = std::make_unique<StreamDetector>(std::min<uint64_t>(8ull << 20, opts_.read_ahead_bytes),
                                                opts_.read_ahead_bytes);
  }
}

Status Volume::close() {
  if (pipeline_.closed()) return Status::OK();
  const uint64_t before = pipeline_.segments_written();
  uint64_t dirty = 0;
  Status st;
  {
    MutexLock gc_lock(&gc_mu_);  // a GC pass running now finishes first
    st = pipeline_.close(&dirty);
  }
  if (flattener_) flattener_->stop();
  settle_disk_cache();  // uploaded frames on their way into the disk cache: a restart finds them
  // Everything is in storage now (or the close failed and the journal keeps
  // it for the next start): a clean journal close marks it so.
  if (journal_ && st.ok()) {
    if (Status jc = journal_->close(); !jc.ok()) {
      log::get("engine")->warn("could not close the journal cleanly error={}", log::quote(jc.ToString()));
    }
  }
  // The lease is kept until the last upload is in; then nobody renews it.
  if (lease_keeper_) lease_keeper_->stop();
  auto logger = log::get("engine");
  if (st.ok() && opts_.lease) {
    if (Status rel = opts_.lease->release(); !rel.ok()) {
      logger->warn("could not release the writer lease error={}", log::quote(rel.ToString()));
    }
  }
  const uint64_t segments = pipeline_.segments_written() - before;
  if (st.ok()) {
    logger->info("volume closed, write buffer flushed dirty_bytes={} segments={}", dirty, segments);
  } else {
    logger->error("volume closed with unflushed data dirty_bytes={} error={}", dirty, log::quote(st.ToString()));
  }
  return st;
}

Volume::~Volume() {
  if (flattener_) flattener_->stop();
  if (lease_keeper_) lease_keeper_->stop();
}

void Volume::settle_disk_cache() {
  if (disk_cache_) disk_cache_->settle();
}

Status Volume::flush() { return flush_through(kFlushEverything); }

BlockDevice::FlushTicket Volume::flush_ticket() {
  if (journal_) return journal_ticket();
  MutexLock lock(&layers_.mu());
  return pipeline_.covering_gen_locked();
}

Status Volume::flush_through(FlushTicket ticket) {
  if (opts_.ephemeral) {
    pipeline_.count_flush();
    return Status::OK();
  }
  if (journal_) return journal_sync(ticket);
  return pipeline_.make_durable(ticket);
}

uint64_t Volume::bytes_stored() {
  if (opts_.ephemeral) return buffer_bytes_->load(std::memory_order_relaxed);
  auto idx = index_->stats();
  return idx.ok() ? idx->bytes_stored : 0;
}

VolumeStats Volume::stats() {
  VolumeStats s;
  s.size_bytes = size_bytes_;
  FlushStats f = pipeline_.stats();
  s.dirty_bytes = f.dirty_bytes;
  s.next_seq = f.next_seq;
  s.storage_failing_since_unix_ms = f.storage_failing_since_unix_ms;
  s.last_storage_error = std::move(f.last_storage_error);
  s.segments_written = f.segments_written;
  s.bytes_uploaded = f.bytes_uploaded;
  s.flushes = f.flushes;
  s.flushes_grouped = f.flushes_grouped;
  s.flush_errors = f.flush_errors;
  if (auto idx = index_->stats(); idx.ok()) s.segments = idx->segments;
  s.bytes_stored = bytes_stored();
  if (auto v = index_->get_meta("checkpoint_unix_ms"); v.ok() && v->has_value()) {
    s.last_checkpoint_unix_ms = std::stoll(**v);
  }
  if (auto v = index_->get_meta("checkpoint_seq"); v.ok() && v->has_value()) s.last_checkpoint_seq = std::stoull(**v);
  {
    MutexLock lock(&layers_.mu());
    s.bytes_live = layers_.data_bytes_locked();
    s.flat = layers_.flat_stats_locked();
    s.index_cache = layers_.index_cache_stats_locked();
    s.resolves = resolves_;
    s.resolve_maps = resolve_maps_;
    for (const Layer* l = layers_.live_locked()->parent.get(); l != nullptr; l = l->parent.get()) s.chain_depth++;
  }
  s.overwrites_in_place = overwrites_in_place_;
  s.cache_bytes = cache_.bytes();
  s.cache_hits = cache_.hits();
  s.cache_misses = cache_.misses();
  if (disk_cache_) {
    s.disk_cache = true;
    s.disk_cache_dir = disk_cache_->dir();
    s.disk = disk_cache_->stats();
  }
  if (fetcher_) s.fetch = fetcher_->stats();
  s.fetch_concurrency = opts_.fetch_concurrency;
  s.read_ahead_bytes = streams_ ? opts_.read_ahead_bytes : 0;
  s.replayed_segments = replayed_segments_;
  if (journal_) {
    const JournalStats js = journal_->stats();
    s.journal = true;
    s.journal_capacity_bytes = js.capacity_bytes;
    s.journal_used_bytes = js.used_bytes;
    s.journal_live_records = js.live_records;
    s.journal_syncs = js.syncs;
    s.journal_fdatasyncs = js.fdatasyncs;
    s.journal_direct_writes = journal_direct_writes_.load(std::memory_order_relaxed);
    s.journal_direct_write_bytes = opts_.journal_direct_write_bytes;
    if (js.live_records > 0) {
      s.upload_lag_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  std::chrono::steady_clock::now() - js.oldest_live_appended)
                                                  .count());
    }
  }
  return s;
}

Status Volume::read_only_refusal(const std::string& what) const {
  return Status::ReadOnly(what + " refused: " + store_->url() +
                          " is open read-only here (a snapshot reader holds no writer lease)");
}

Result<GcReport> Volume::gc(const GcOptions& options) {
  if (opts_.read_only) return read_only_refusal("gc");
  auto report = GarbageCollector(*this, options).run();
  if (flattener_) flattener_->kick();  // merges and rewrites may leave the base to rebuild
  return report;
}

Result<uint64_t> Volume::checkpoint() {
  if (opts_.read_only) return read_only_refusal("checkpoint");
  return checkpointer_.take();
}

std::optional<Volume::ChangeMark> Volume::change_mark() {
  if (opts_.ephemeral) return std::nullopt;
  MutexLock lock(&layers_.mu());
  ChangeMark mark;
  mark.next_seq = pipeline_.next_seq_locked();
  mark.held_layers = layers_.alive_count_locked();
  return mark;
}

}  // namespace portalbd
