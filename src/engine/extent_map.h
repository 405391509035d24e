// ExtentMap<V>: a map from non-overlapping block ranges to values, with
// overwrite semantics: assigning a range trims or splits whatever it covers.
//
// Used for the write buffer (block ranges -> buffered bytes) and the live
// index (block ranges -> where the bytes live in object storage). V must
// provide `V sliced(uint64_t skip_blocks) const`, the value for the same
// extent with its first `skip_blocks` blocks cut off.
//
// Thread-safety: none; the owner locks.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

namespace portalbd {

template <typename V>
class ExtentMap {
 public:
  struct Node {
    uint64_t length;
    V value;
  };
  using Map = std::map<uint64_t, Node>;

  // Sets [start, start+length) to `value`. REQUIRES: length > 0.
  void assign(uint64_t start, uint64_t length, V value) {
    erase(start, length);
    map_.emplace(start, Node{length, std::move(value)});
  }

  // assign() in O(1) when the range starts at or past the end of every
  // mapped one, as when a map is loaded in ascending order (Volume open
  // reads each layer's extents from the index sorted by lba); any other
  // range takes assign()'s way, so the result is always assign()'s.
  void append(uint64_t start, uint64_t length, V value) {
    if (!map_.empty()) {
      const auto& [last_start, last] = *map_.rbegin();
      if (last_start + last.length > start) return assign(start, length, std::move(value));
    }
    map_.emplace_hint(map_.end(), start, Node{length, std::move(value)});
  }

  // Removes [start, start+length): afterwards nothing maps there.
  void erase(uint64_t start, uint64_t length) {
    const uint64_t end = start + length;
    auto it = map_.lower_bound(start);
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      const uint64_t prev_end = prev->first + prev->second.length;
      if (prev_end > start) {
        if (prev_end > end) {  // the new range sits inside prev: keep its right part too
          map_.emplace(end, Node{prev_end - end, prev->second.value.sliced(end - prev->first)});
        }
        prev->second.length = start - prev->first;
      }
    }
    while (it != map_.end() && it->first < end) {
      const uint64_t it_end = it->first + it->second.length;
      if (it_end > end) {  // keep the part past `end`
        Node right{it_end - end, it->second.value.sliced(end - it->first)};
        map_.erase(it);
        map_.emplace(end, std::move(right));
        break;
      }
      it = map_.erase(it);
    }
  }

  // Calls fn(start, length, value) for each mapped piece inside
  // [start, start+length), clipped to it, in ascending order.
  template <typename Fn>
  void visit(uint64_t start, uint64_t length, Fn&& fn) const {
    const uint64_t end = start + length;
    auto it = map_.upper_bound(start);
    if (it != map_.begin()) --it;
    for (; it != map_.end() && it->first < end; ++it) {
      const uint64_t s = std::max(start, it->first);
      const uint64_t e = std::min(end, it->first + it->second.length);
      if (s >= e) continue;
      fn(s, e - s, s == it->first ? it->second.value : it->second.value.sliced(s - it->first));
    }
  }

  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  void clear() { map_.clear(); }
  const Map& entries() const { return map_; }

 private:
  Map map_;
};

}  // namespace portalbd
