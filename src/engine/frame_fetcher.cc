// FrameFetcher: parallel, deduplicated frame fetches (see frame_fetcher.h).
#include "src/engine/frame_fetcher.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <unordered_set>

#include "src/log/log.h"
#include "src/util/thread_name.h"

namespace portalbd {

FrameFetcher::FrameFetcher(ObjectStore* store, FrameCache* cache, DiskFrameCache* disk, Decoder decode,
                           FrameFetcherOptions options)
    : store_(store),
      cache_(cache),
      disk_(disk),
      decode_(std::move(decode)),
      opts_{std::max<size_t>(1, options.concurrency),
            std::max<uint64_t>(1, options.run_bytes),
            std::max<uint64_t>(1, options.ahead_min_run_bytes),
            options.prefetch_budget_bytes,
            options.read_timeout_ms,
            options.local_store},
      max_ahead_running_(std::max<size_t>(1, opts_.concurrency * 3 / 4)) {}

FrameFetcher::~FrameFetcher() {
  std::vector<std::thread> threads;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    threads = std::move(threads_);
  }
  work_ready_.notify_all();
  for (std::thread& t : threads) t.join();
}

std::vector<FrameFetcher::Job> FrameFetcher::claim_locked(const std::vector<FrameWant>& wants, bool ahead,
                                                          uint64_t budget,
                                                          std::vector<std::pair<Key, std::shared_ptr<Slot>>>* waits,
                                                          FrameBatch* batch) {
  // seq -> offset -> (frame, slot): claimed frames in object order.
  std::map<uint64_t, std::map<uint64_t, std::pair<FrameRef, std::shared_ptr<Slot>>>> claimed;
  std::unordered_set<Key, KeyHash> seen;  // a frame several pieces of a read share is looked at once
  uint64_t claimed_bytes = 0;
  for (const FrameWant& w : wants) {
    const Key key{w.seq, w.ref.offset};
    if (!seen.insert(key).second) continue;
    if (batch != nullptr && batch->count(key)) continue;
    if (auto it = in_flight_.find(key); it != in_flight_.end()) {
      if (waits != nullptr) {
        waits->emplace_back(key, it->second);
        ++stats_.joined;
      }
      continue;
    }
    // The caller's lookup missed; a fetch may have landed it since.
    if (auto hit = cache_->recheck(w.seq, w.ref.offset)) {
      if (batch != nullptr) (*batch)[key] = std::move(hit);
      continue;
    }
    if (ahead && claimed_bytes + w.ref.stored_len > budget) {
      ++stats_.prefetch_dropped;
      continue;
    }
    auto slot = std::make_shared<Slot>();
    in_flight_.emplace(key, slot);
    claimed[w.seq].emplace(w.ref.offset, std::make_pair(w.ref, slot));
    claimed_bytes += w.ref.stored_len;
    if (waits != nullptr) waits->emplace_back(key, slot);
  }
  // Read-ahead on a remote store: several GETs at once (ahead_min_run_bytes).
  uint64_t run_bytes = opts_.run_bytes;
  if (ahead && !opts_.local_store) {
    run_bytes =
        std::clamp<uint64_t>(claimed_bytes / kAheadSplit, std::min(opts_.ahead_min_run_bytes, run_bytes), run_bytes);
  }
  std::vector<Job> jobs;
  for (auto& [seq, frames] : claimed) {
    for (auto& [offset, frame] : frames) {
      // A new job where the run breaks (a gap in the object) or would grow past run_bytes.
      const bool extends =
          !jobs.empty() && jobs.back().seq == seq && !jobs.back().frames.empty() &&
          jobs.back().frames.back().first.offset + jobs.back().frames.back().first.stored_len == offset &&
          jobs.back().stored_bytes + frame.first.stored_len <= run_bytes;
      if (!extends) jobs.push_back(Job{seq, {}, 0, ahead});
      jobs.back().stored_bytes += frame.first.stored_len;
      jobs.back().frames.push_back(std::move(frame));
    }
  }
  return jobs;
}

void FrameFetcher::promote_locked(const Slot* slot) {
  for (auto it = ahead_.begin(); it != ahead_.end(); ++it) {
    const bool holds =
        std::any_of(it->frames.begin(), it->frames.end(), [&](const auto& f) { return f.second.get() == slot; });
    if (!holds) continue;
    // Still counted as read-ahead (budget, threads) until it is done: only its place changes.
    readers_.push_back(std::move(*it));
    ahead_.erase(it);
    return;
  }
}

void FrameFetcher::enqueue_locked(std::vector<Job> jobs) {
  for (Job& job : jobs) {
    if (job.ahead) ahead_bytes_ += job.stored_bytes;
    (job.ahead ? ahead_ : readers_).push_back(std::move(job));
    // One more thread while the queued jobs outnumber the idle ones, up to the limit.
    if (readers_.size() + ahead_.size() > idle_ && threads_.size() < opts_.concurrency) {
      threads_.emplace_back([this] {
        name_this_thread("fetch");
        work();
      });
    }
  }
}

bool FrameFetcher::can_take_locked() const {
  return !readers_.empty() || (!ahead_.empty() && ahead_running_ < max_ahead_running_);
}

Status FrameFetcher::fetch(const std::vector<FrameWant>& wants, FrameBatch* batch) {
  std::vector<std::pair<Key, std::shared_ptr<Slot>>> waits;
  MutexLock lock(&mu_);
  std::vector<Job> jobs = claim_locked(wants, false, 0, &waits, batch);
  // Frames a queued read-ahead job holds: that job goes first now.
  for (const auto& [key, slot] : waits) {
    if (!slot->done) promote_locked(slot.get());
  }
  // On a local store the reader fetches its first run itself; the others go to the pool.
  std::optional<Job> mine;
  if (opts_.local_store && !jobs.empty()) {
    mine = std::move(jobs.front());
    jobs.erase(jobs.begin());
  }
  enqueue_locked(std::move(jobs));
  if (!readers_.empty()) work_ready_.notify_all();
  if (mine) {
    ++stats_.in_flight;
    lock.unlock();
    run(*mine);
    lock.lock();
    finish_locked(*mine);
  }
  Status first_error;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.read_timeout_ms);
  for (const auto& [key, slot] : waits) {
    while (!slot->done) {
      if (opts_.read_timeout_ms == 0) {
        slot->done_cv.wait(lock);
      } else if (slot->done_cv.wait_until(lock, deadline) == std::cv_status::timeout && !slot->done) {
        ++stats_.timeouts;
        return Status::Unavailable("storage did not answer a read of " + segment_key(key.first) + " within " +
                                   std::to_string(opts_.read_timeout_ms) + " ms");
      }
    }
    if (!slot->status.ok()) {
      if (first_error.ok()) first_error = slot->status;
      continue;
    }
    (*batch)[key] = slot->frame;
  }
  return first_error;
}

bool FrameFetcher::fetch_cached(const std::vector<FrameWant>& wants, FrameBatch* batch) {
  uint64_t read = 0, disk_hits = 0;
  bool all = true;
  for (const FrameWant& w : wants) {
    const Key key{w.seq, w.ref.offset};
    if (batch->count(key)) continue;
    if (auto hit = cache_->recheck(w.seq, w.ref.offset)) {
      (*batch)[key] = std::move(hit);
      continue;
    }
    {
      MutexLock lock(&mu_);
      if (in_flight_.count(key)) {  // someone is fetching it: that is a wait
        all = false;
        break;
      }
    }
    // Not claimed: a fetch() of the same frame meanwhile only does the work twice.
    // One buffer per frame, not zero-filled, handed to the decoder: a raw
    // frame is cached in it, not copied.
    std::shared_ptr<std::byte[]> buf(new std::byte[w.ref.stored_len]);
    std::span<std::byte> stored(buf.get(), w.ref.stored_len);
    const bool from_disk = disk_ != nullptr && disk_->get_cached(w.seq, w.ref, stored);
    if (!from_disk) {
      auto n = store_->get_range_cached(segment_key(w.seq), w.ref.offset, stored);
      if (!n.ok()) {
        all = false;
        break;
      }
      stored = stored.first(*n);  // short: the decoder calls it truncated
    }
    auto frame = decode_(w.seq, w.ref, stored, buf);
    if (!frame.ok()) {  // fetch() reports it
      all = false;
      break;
    }
    (*batch)[key] = std::move(*frame);
    ++(from_disk ? disk_hits : read);
  }
  if (read > 0 || disk_hits > 0) {
    MutexLock lock(&mu_);
    stats_.cached_reads += read;
    stats_.disk_hits += disk_hits;
  }
  return all;
}

void FrameFetcher::prefetch(const std::vector<FrameWant>& wants) {
  MutexLock lock(&mu_);
  if (stopping_) return;
  const uint64_t room = opts_.prefetch_budget_bytes > ahead_bytes_ ? opts_.prefetch_budget_bytes - ahead_bytes_ : 0;
  std::vector<Job> jobs = claim_locked(wants, true, room, nullptr, nullptr);
  if (jobs.empty()) return;
  enqueue_locked(std::move(jobs));
  work_ready_.notify_all();
}

FrameFetcherStats FrameFetcher::stats() const {
  MutexLock lock(&mu_);
  FrameFetcherStats s = stats_;
  s.threads = threads_.size();
  return s;
}

void FrameFetcher::work() {
  MutexLock lock(&mu_);
  for (;;) {
    if (!can_take_locked() && !stopping_) {
      ++idle_;
      while (!can_take_locked() && !stopping_) work_ready_.wait(lock);
      --idle_;
    }
    if (stopping_) return;  // queued read-ahead is dropped; no reader waits (destructor contract)
    Job job;
    if (!readers_.empty()) {
      job = std::move(readers_.front());
      readers_.pop_front();
    } else {
      job = std::move(ahead_.front());
      ahead_.pop_front();
    }
    if (job.ahead) ++ahead_running_;
    ++stats_.in_flight;
    lock.unlock();
    run(job);
    lock.lock();
    finish_locked(job);
    if (job.ahead) work_ready_.notify_all();  // room for another read-ahead job
  }
}

void FrameFetcher::finish_locked(Job& job) {
  --stats_.in_flight;
  stats_.gets += job.gets;
  stats_.bytes_fetched += job.bytes_fetched;
  stats_.disk_hits += job.disk_hits;
  if (job.ahead) {
    --ahead_running_;
    ahead_bytes_ -= job.stored_bytes;
  }
  for (auto& [ref, slot] : job.frames) {
    slot->done = true;
    slot->done_cv.notify_all();
    if (job.ahead && slot->status.ok()) ++stats_.prefetched;
    in_flight_.erase({job.seq, ref.offset});
  }
}

void FrameFetcher::run(Job& job) {
  const std::string key = segment_key(job.seq);
  // The disk cache first: what it holds costs a pread.
  std::vector<std::pair<FrameRef, Slot*>> missing;
  std::vector<std::byte> stored;
  for (auto& [ref, slot] : job.frames) {
    if (disk_ != nullptr && disk_->get(job.seq, ref, &stored)) {
      ++job.disk_hits;
      auto frame = decode_(job.seq, ref, stored, nullptr);
      slot->status = frame.status();
      if (frame.ok()) slot->frame = std::move(*frame);
      continue;
    }
    missing.emplace_back(ref, slot.get());
  }
  // Then one GET per run still back to back.
  for (size_t first = 0; first < missing.size();) {
    const uint64_t start = missing[first].first.offset;
    uint64_t end = start + missing[first].first.stored_len;
    size_t last = first + 1;
    while (last < missing.size() && missing[last].first.offset == end) end += missing[last++].first.stored_len;
    // Its own buffer: the disk cache keeps it until its writer has the frames.
    auto fetched = std::make_shared<std::vector<std::byte>>();
    Status st = store_->get_range(key, start, end - start, fetched.get());
    ++job.gets;
    if (!st.ok()) {
      if (job.ahead) {
        log::get("engine")->debug("read-ahead of segment failed object={} offset={} error={}", key, start,
                                  log::quote(st.ToString()));
      } else {
        log::get("engine")->error("read of segment failed object={} offset={} error={}", key, start,
                                  log::quote(st.ToString()));
      }
      for (size_t i = first; i < last; ++i) missing[i].second->status = st.With("read " + key);
      first = last;
      continue;
    }
    const std::vector<std::byte>& got = *fetched;
    job.bytes_fetched += got.size();
    std::vector<FrameRef> decoded;
    for (size_t i = first; i < last; ++i) {
      const FrameRef& ref = missing[i].first;
      // A short answer leaves later frames short; decoding calls that truncation.
      const uint64_t at = std::min<uint64_t>(ref.offset - start, got.size());
      const uint64_t len = std::min<uint64_t>(ref.stored_len, got.size() - at);
      const std::span<const std::byte> bytes = std::span<const std::byte>(got).subspan(at, len);
      auto frame = decode_(job.seq, ref, bytes, nullptr);
      missing[i].second->status = frame.status();
      if (!frame.ok()) continue;
      missing[i].second->frame = std::move(*frame);
      decoded.push_back(ref);
    }
    // Verified by decoding: kept on disk for the next miss and the next
    // start, written by the cache's own thread (the readers waiting for this
    // job do not wait for that).
    if (disk_ != nullptr && !decoded.empty()) disk_->put_object(job.seq, std::move(fetched), std::move(decoded), start);
    first = last;
  }
}

}  // namespace portalbd
