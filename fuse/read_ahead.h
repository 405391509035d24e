// ReadAhead: sequential-read acceleration for one open snapshot image.
//
// A reader that continues where its last read ended (or reads inside the
// window we already fetch) is a stream: its reads are served from aligned
// chunks of `chunk_bytes`, and the next `window_chunks` chunks are fetched in
// the background on the pool's other connections, so the daemon is always
// working ahead of `dd` / `cp` / `qemu-img`. Any other read goes straight to
// the pool for exactly the bytes asked, so a loop-mounted filesystem's small
// random reads do not pay for whole chunks.
//
// Only for immutable data (snapshot exports): cached chunks are never
// invalidated. live.img does not use it.
//
// Ownership: borrows the pool, which must outlive this object; holds at most
// about 2 * window_chunks chunks. In-flight fetches own their chunk, so
// eviction never frees a buffer a worker is filling.
// Thread-safety: read() is safe from many FUSE threads at once; mu_ guards
// chunks_ and stream_end_; each Chunk has its own mutex.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "fuse/connection_pool.h"
#include "src/util/mutex.h"

namespace portalbd::fuse {

class ReadAhead {
 public:
  ReadAhead(ConnectionPool* pool, uint64_t size_bytes, size_t chunk_bytes, size_t window_chunks)
      : pool_(pool), size_(size_bytes), chunk_bytes_(chunk_bytes), window_(window_chunks) {}

  // REQUIRES: offset + count <= size.
  Status read(char* buf, size_t count, uint64_t offset) EXCLUDES(mu_);

 private:
  struct Chunk {
    Mutex mu;
    CondVar cv;
    bool done GUARDED_BY(mu) = false;
    Status status GUARDED_BY(mu);
    std::vector<char> data;  // written by one worker before done, then read-only
  };

  std::shared_ptr<Chunk> get_or_fetch_locked(uint64_t index, ConnectionPool::Priority priority) REQUIRES(mu_);
  void evict_locked(uint64_t first, uint64_t last) REQUIRES(mu_);
  static Status wait(Chunk* chunk);

  ConnectionPool* const pool_;
  const uint64_t size_;
  const size_t chunk_bytes_;
  const size_t window_;

  Mutex mu_;
  std::map<uint64_t, std::shared_ptr<Chunk>> chunks_ GUARDED_BY(mu_);  // chunk index -> chunk
  uint64_t stream_end_ GUARDED_BY(mu_) = 0;                            // where a sequential reader reads next
};

}  // namespace portalbd::fuse
