// StreamDetector: sequential reader detection (see stream_detector.h).
#include "src/engine/stream_detector.h"

#include <algorithm>

namespace portalbd {

StreamDetector::StreamDetector(uint64_t first_window, uint64_t max_window, size_t max_streams)
    : first_window_(first_window),
      max_window_(std::max(first_window, max_window)),
      max_streams_(std::max<size_t>(1, max_streams)) {}

StreamDetector::Range StreamDetector::observe(uint64_t view, uint64_t offset, uint64_t length) {
  if (length == 0 || max_window_ == 0) return {};
  const uint64_t end = offset + length;
  MutexLock lock(&mu_);
  ++clock_;
  Stream* s = nullptr;
  for (Stream& candidate : streams_) {
    if (candidate.view != view) continue;
    const uint64_t behind = kBehindRequests * length, ahead = kAheadRequests * length;
    if (offset + behind >= candidate.front && offset <= candidate.front + ahead) {
      s = &candidate;
      break;
    }
  }
  if (s == nullptr) {
    if (streams_.size() < max_streams_) {
      streams_.emplace_back();
      s = &streams_.back();
    } else {
      s = &*std::min_element(streams_.begin(), streams_.end(),
                             [](const Stream& a, const Stream& b) { return a.used < b.used; });
    }
    *s = Stream{view, end, 0, 0, 0, clock_};
    return {};
  }
  s->used = clock_;
  s->front = std::max(s->front, end);
  if (++s->run < kMinRun) return {};
  if (s->window == 0) s->window = std::min(max_window_, std::max(first_window_, kWindowRequests * length));
  const uint64_t from = std::max(s->asked, s->front);
  if (from >= s->front + s->window / 2) return {};  // more than half a window still ahead
  const uint64_t to = s->front + s->window;
  s->asked = to;
  s->window = std::min(max_window_, s->window * 2);
  return {from, to - from};
}

}  // namespace portalbd
