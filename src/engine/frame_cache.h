// FrameCache: decoded segment frames kept in memory, least recently used
// evicted first, bounded by total bytes. Frames are immutable once decoded, so
// readers share them without copying.
// Thread-safety: all methods are safe concurrently (one mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "src/util/mutex.h"

namespace portalbd {

class FrameCache {
 public:
  // One decoded frame: `bytes`, kept alive by `owner`. The owner is the
  // frame's own buffer, or, for a frame stored uncompressed in a store that
  // keeps objects in memory, the stored object itself (nothing was copied).
  struct Frame {
    std::shared_ptr<const void> owner;
    std::span<const std::byte> bytes;
    explicit operator bool() const { return owner != nullptr; }
  };

  explicit FrameCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // The frame at (seq, offset), or an empty Frame; counted as a hit or miss.
  Frame get(uint64_t seq, uint64_t offset);
  // get() for a second look after a miss was counted (FrameFetcher): counts nothing.
  Frame recheck(uint64_t seq, uint64_t offset);
  // Counts lookups made with recheck() that are to count after all (a read
  // offered without waiting counts its lookups only once it is served).
  void count(uint64_t hits, uint64_t misses);
  void put(uint64_t seq, uint64_t offset, Frame frame);
  uint64_t bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Key {
    uint64_t seq, offset;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.seq * 0x9E3779B97F4A7C15ull ^ k.offset); }
  };
  struct Item {
    Key key;
    Frame frame;
  };

  const uint64_t capacity_;
  mutable Mutex mu_;
  std::list<Item> lru_ GUARDED_BY(mu_);  // front = most recent
  std::unordered_map<Key, std::list<Item>::iterator, KeyHash> map_ GUARDED_BY(mu_);
  uint64_t bytes_ GUARDED_BY(mu_) = 0;
  uint64_t hits_ GUARDED_BY(mu_) = 0;
  uint64_t misses_ GUARDED_BY(mu_) = 0;
};

}  // namespace portalbd
