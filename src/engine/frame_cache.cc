#include "src/engine/frame_cache.h"

namespace portalbd {

FrameCache::Frame FrameCache::get(uint64_t seq, uint64_t offset) {
  MutexLock lock(&mu_);
  auto it = map_.find({seq, offset});
  if (it == map_.end()) {
    ++misses_;
    return {};
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->frame;
}

FrameCache::Frame FrameCache::recheck(uint64_t seq, uint64_t offset) {
  MutexLock lock(&mu_);
  auto it = map_.find({seq, offset});
  if (it == map_.end()) return {};
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->frame;
}

void FrameCache::count(uint64_t hits, uint64_t misses) {
  MutexLock lock(&mu_);
  hits_ += hits;
  misses_ += misses;
}

void FrameCache::put(uint64_t seq, uint64_t offset, Frame frame) {
  if (capacity_ == 0 || !frame) return;
  MutexLock lock(&mu_);
  Key key{seq, offset};
  if (map_.count(key) != 0) return;
  bytes_ += frame.bytes.size();
  lru_.push_front({key, std::move(frame)});
  map_[key] = lru_.begin();
  while (bytes_ > capacity_ && !lru_.empty()) {
    bytes_ -= lru_.back().frame.bytes.size();
    map_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

uint64_t FrameCache::bytes() const {
  MutexLock lock(&mu_);
  return bytes_;
}
uint64_t FrameCache::hits() const {
  MutexLock lock(&mu_);
  return hits_;
}
uint64_t FrameCache::misses() const {
  MutexLock lock(&mu_);
  return misses_;
}

}  // namespace portalbd
