// FrameFetcher: brings the segment frames a read needs, and those a read-ahead
// expects, from the local disk cache or the store into the memory FrameCache,
// many at once and each once (issue 21).
//
// A remote store answers one GET in tens of milliseconds whatever its size,
// and a stream carries tens of MiB/s, so a reader that fetches frame after
// frame gets a fraction of what the store can give. Here every fetch is a job
// on a pool of up to `concurrency` threads, so that many GETs are in flight:
// the runs of one large read side by side, the reads of many NBD requests and
// connections side by side, and read-ahead beside them.
//
//   fetch()     a reader's frames: split into jobs (runs of frames stored
//               back to back, at most run_bytes each), queued ahead of every
//               read-ahead job; the reader waits for its jobs. A frame
//               another job is already fetching is waited for, not fetched
//               twice; if that job is a queued read-ahead, it is moved to the
//               front.
//   prefetch()  read-ahead: the same jobs, queued behind, never waited for.
//               At most prefetch_budget_bytes of them are queued or running
//               (what does not fit is dropped: memory stays bounded however
//               far ahead readers ask), and they take at most three quarters
//               of the threads, so a reader's job always finds one soon.
//
// A job reads what it can from the disk cache (one pread a frame), GETs the
// rest as one ranged GET per run still contiguous, and hands each frame's
// stored bytes to the Decoder (Volume::decode_and_cache: verify, decompress,
// put into the memory cache). Frames it GOT are written to the disk cache
// once they decoded (verified). No lock is held across a GET, a pread or a
// decode: the fetcher's mutex guards only the queues and the table of frames
// in flight.
//
// Errors: a frame whose fetch or decode failed reports that Status to every
// reader waiting for it and is forgotten, so the next read tries again. A
// reader waits at most read_timeout_ms (the daemon's flush_timeout_ms), so a
// store that stops answering costs a read EIO at that deadline, whatever
// the store's own retries are doing; what the disk and memory caches hold
// is still served. A
// failed read-ahead with no reader waiting is logged at debug and costs
// nothing else (its frames may belong to a segment GC deleted since).
//
// Each frame in flight has its own condition variable: a finished job wakes
// the readers of its frames, not every reader waiting.
//
// Threads are started on demand, one per queued job while none is idle, up
// to `concurrency`, and live until the fetcher is destroyed; a volume whose
// reads never miss the memory cache starts none. The destructor drops
// queued read-ahead and joins the threads; no fetch() may be running then.
//
// Thread-safety: fetch(), prefetch() and stats() may be called from any
// thread. Lock order: mu_ is taken before the FrameCache's (cache lookups
// under it), never the other way; the Decoder and the stores are called
// with mu_ released.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "src/engine/disk_frame_cache.h"
#include "src/engine/frame_cache.h"
#include "src/format/segment.h"
#include "src/store/object_store.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd {

// Frames one read has in hand, by (segment seq, frame offset in the object).
using FrameBatch = std::map<std::pair<uint64_t, uint64_t>, FrameCache::Frame>;

struct FrameWant {
  uint64_t seq = 0;
  FrameRef ref;
};

struct FrameFetcherOptions {
  size_t concurrency = 32;  // jobs (GETs or disk-cache reads) at once; at least 1
  // Stored bytes of one job at most (a single larger frame still is one job):
  // 8 MiB, the ranged GET size object stores serve best (per-request costs
  // fade, and one slow answer delays little).
  uint64_t run_bytes = 8ull << 20;
  // A remote store's GET waits its round trip, then streams at one
  // connection's rate: a read-ahead range is split into kAheadSplit jobs or
  // more, each at least this long (and at most run_bytes), so that a stream
  // starting with a small window still has several GETs in flight. Local
  // stores keep run_bytes.
  uint64_t ahead_min_run_bytes = 1ull << 20;
  uint64_t prefetch_budget_bytes = 64ull << 20;  // read-ahead queued or running, stored bytes
  // A reader waits at most this long for its frames, then gets kUnavailable
  // (EIO to an NBD client) while the fetch goes on in the background and
  // lands in the cache if it ever finishes. 0: no limit but the store's own.
  uint64_t read_timeout_ms = 0;
  // The store answers from the local disk (file://): a reader runs its first
  // job in its own thread (read_timeout_ms does not bound that job; a local
  // disk that hangs hangs the reader as it would any pread). Read-ahead and the
  // reader's other jobs still go to the pool.
  bool local_store = false;
};

struct FrameFetcherStats {
  uint64_t gets = 0;              // ranged GETs issued
  uint64_t bytes_fetched = 0;     // stored bytes those GETs returned
  uint64_t disk_hits = 0;         // frames read from the disk cache
  uint64_t joined = 0;            // frames a reader waited for instead of fetching again
  uint64_t prefetched = 0;        // frames read-ahead brought in
  uint64_t prefetch_dropped = 0;  // read-ahead frames over the budget, not fetched
  uint64_t timeouts = 0;          // reads that gave up after read_timeout_ms
  uint64_t cached_reads = 0;      // frames fetch_cached() read from the store's cached pages
                                  // (those from the disk cache's are disk_hits)
  uint64_t in_flight = 0;         // jobs running now
  uint64_t threads = 0;
};

class FrameFetcher {
 public:
  // Verifies and decodes a frame's stored bytes and puts it into the memory
  // cache. `stored` lives only for the call, unless `owner` (may be null)
  // keeps it: it then holds exactly this frame's stored bytes, and a frame
  // stored raw may be cached where it is instead of copied.
  using Decoder = std::function<Result<FrameCache::Frame>(
      uint64_t seq, const FrameRef& ref, std::span<const std::byte> stored, std::shared_ptr<const void> owner)>;

  // `disk` may be null (no disk cache). Every pointer must outlive the fetcher.
  FrameFetcher(ObjectStore* store, FrameCache* cache, DiskFrameCache* disk, Decoder decode,
               FrameFetcherOptions options);
  ~FrameFetcher();
  FrameFetcher(const FrameFetcher&) = delete;
  FrameFetcher& operator=(const FrameFetcher&) = delete;

  // Puts every frame of `wants` into *batch (those already there are
  // skipped). Returns the first error of a frame it needed; *batch then
  // holds some of them.
  Status fetch(const std::vector<FrameWant>& wants, FrameBatch* batch) EXCLUDES(mu_);
  // fetch(), only if every frame can be had without waiting: from the memory
  // cache, or the cached pages of the disk cache or of the store
  // (DiskFrameCache::get_cached, ObjectStore::get_range_cached).
  // Returns false as soon as one cannot (in flight, not cached, any error);
  // *batch then holds some of them and the caller fetch()es the rest.
  bool fetch_cached(const std::vector<FrameWant>& wants, FrameBatch* batch) EXCLUDES(mu_);
  // Starts fetching `wants` into the memory cache and returns at once.
  void prefetch(const std::vector<FrameWant>& wants) EXCLUDES(mu_);
  FrameFetcherStats stats() const EXCLUDES(mu_);

 private:
  using Key = std::pair<uint64_t, uint64_t>;  // seq, offset
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.first * 0x9E3779B97F4A7C15ull ^ k.second); }
  };
  // One frame being fetched; readers wait on done_cv until done.
  struct Slot {
    CondVar done_cv;
    bool done = false;
    Status status;
    FrameCache::Frame frame;
  };
  struct Job {
    uint64_t seq = 0;
    std::vector<std::pair<FrameRef, std::shared_ptr<Slot>>> frames;  // in object order
    uint64_t stored_bytes = 0;
    bool ahead = false;  // a read-ahead job
    // What run() did, added to stats_ when the job is done.
    uint64_t gets = 0, bytes_fetched = 0, disk_hits = 0;
  };

  // Claims every frame of `wants` that is neither cached nor in flight and
  // cuts the claimed ones into jobs. For fetch(), frames already in flight
  // or cached go to *waits / *batch; for prefetch(), claiming stops at
  // `budget` stored bytes.
  // A read-ahead range is fetched as at least this many jobs on a remote store.
  static constexpr uint64_t kAheadSplit = 8;
  std::vector<Job> claim_locked(const std::vector<FrameWant>& wants, bool ahead, uint64_t budget,
                                std::vector<std::pair<Key, std::shared_ptr<Slot>>>* waits, FrameBatch* batch)
      REQUIRES(mu_);
  // A read-ahead job still queued that holds `slot` moves to the readers' queue.
  void promote_locked(const Slot* slot) REQUIRES(mu_);
  void enqueue_locked(std::vector<Job> jobs) REQUIRES(mu_);
  // A worker may take a job now (read-ahead only below its share of threads).
  bool can_take_locked() const REQUIRES(mu_);
  void work() EXCLUDES(mu_);
  // After run(job): counts it, marks its slots done and wakes their readers.
  void finish_locked(Job& job) REQUIRES(mu_);
  // Fills every slot of `job` (status and frame); called unlocked.
  void run(Job& job);

  ObjectStore* const store_;
  FrameCache* const cache_;
  DiskFrameCache* const disk_;
  const Decoder decode_;
  const FrameFetcherOptions opts_;
  const size_t max_ahead_running_;

  mutable Mutex mu_;
  CondVar work_ready_;  // a job was queued, room for read-ahead, or stopping_
  std::unordered_map<Key, std::shared_ptr<Slot>, KeyHash> in_flight_ GUARDED_BY(mu_);
  std::deque<Job> readers_ GUARDED_BY(mu_);   // fetch() jobs, first
  std::deque<Job> ahead_ GUARDED_BY(mu_);     // prefetch() jobs
  uint64_t ahead_bytes_ GUARDED_BY(mu_) = 0;  // queued or running read-ahead
  size_t ahead_running_ GUARDED_BY(mu_) = 0;
  size_t idle_ GUARDED_BY(mu_) = 0;  // threads waiting for a job
  bool stopping_ GUARDED_BY(mu_) = false;
  FrameFetcherStats stats_ GUARDED_BY(mu_);
  std::vector<std::thread> threads_ GUARDED_BY(mu_);
};

}  // namespace portalbd
