#include "fuse/read_ahead.h"

#include <algorithm>
#include <cstring>

namespace portalbd::fuse {

std::shared_ptr<ReadAhead::Chunk> ReadAhead::get_or_fetch_locked(uint64_t index, ConnectionPool::Priority priority) {
  if (auto it = chunks_.find(index); it != chunks_.end()) return it->second;
  auto chunk = std::make_shared<Chunk>();
  const uint64_t offset = index * chunk_bytes_;
  const size_t length = static_cast<size_t>(std::min<uint64_t>(chunk_bytes_, size_ - offset));
  chunk->data.resize(length);
  chunks_.emplace(index, chunk);
  pool_->submit(
      [chunk, offset](NbdConnection& conn, Deadline deadline) {
        return conn.pread(chunk->data.data(), chunk->data.size(), offset, deadline);
      },
      [chunk](const Status& st) {
        {
          MutexLock lock(&chunk->mu);
          chunk->status = st;
          chunk->done = true;
        }
        chunk->cv.notify_all();
      },
      priority);
  return chunk;
}

void ReadAhead::evict_locked(uint64_t first, uint64_t last) {
  // Keep one chunk behind the reader: concurrent kernel requests arrive a
  // little out of order.
  const uint64_t keep_from = first == 0 ? 0 : first - 1;
  const uint64_t keep_to = last + window_;
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    if (it->first < keep_from || it->first > keep_to)
      it = chunks_.erase(it);
    else
      ++it;
  }
}

Status ReadAhead::wait(Chunk* chunk) {
  MutexLock lock(&chunk->mu);
  while (!chunk->done) chunk->cv.wait(lock);
  return chunk->status;
}

Status ReadAhead::read(char* buf, size_t count, uint64_t offset) {
  if (count == 0) return Status::OK();
  const uint64_t first = offset / chunk_bytes_;
  const uint64_t last = (offset + count - 1) / chunk_bytes_;
  const uint64_t chunk_count = (size_ + chunk_bytes_ - 1) / chunk_bytes_;
  std::vector<std::shared_ptr<Chunk>> needed;
  {
    MutexLock lock(&mu_);
    const bool streaming = offset == stream_end_ || chunks_.count(first) != 0;
    stream_end_ = offset + count;
    if (streaming) {
      for (uint64_t i = first; i <= last; ++i) {
        needed.push_back(get_or_fetch_locked(i, ConnectionPool::Priority::kDemand));
      }
      for (uint64_t i = last + 1; i <= last + window_ && i < chunk_count; ++i) {
        get_or_fetch_locked(i, ConnectionPool::Priority::kPrefetch);
      }
      evict_locked(first, last);
    }
  }
  if (needed.empty()) {
    return pool_->run([buf, count, offset](NbdConnection& conn, Deadline deadline) {
      return conn.pread(buf, count, offset, deadline);
    });
  }
  for (uint64_t i = first; i <= last; ++i) {
    Chunk* chunk = needed[i - first].get();
    Status st = wait(chunk);
    if (!st.ok()) {
      // Forget the failed chunk so that the next read tries again.
      MutexLock lock(&mu_);
      if (auto it = chunks_.find(i); it != chunks_.end() && it->second.get() == chunk) chunks_.erase(it);
      return st;
    }
    const uint64_t chunk_start = i * chunk_bytes_;
    const uint64_t from = std::max(offset, chunk_start);
    const uint64_t to = std::min(offset + count, chunk_start + chunk->data.size());
    std::memcpy(buf + (from - offset), chunk->data.data() + (from - chunk_start), to - from);
  }
  return Status::OK();
}

}  // namespace portalbd::fuse
