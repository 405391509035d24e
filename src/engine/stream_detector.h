// StreamDetector: finds the sequential readers among a volume's reads and
// says, for each, what to read ahead (issue 21).
//
// A stream is a run of reads of one view (the live volume, or one snapshot)
// that each start near where the stream got to. "Near" allows for the
// reorder a queue depth brings: NBD requests run on several workers, and the
// kernel sends its 128 KiB reads many at a time, so read k+1 may be seen
// before read k. A read matches a stream when it starts no more than
// kBehindRequests of its own length behind the stream's front and no more
// than kAheadRequests of its own length past it; the front is the furthest
// end seen. Both slacks scale with the read, so 4 KiB random reads almost
// never chain by chance, however small the device.
//
// After kMinRun matching reads the stream reads ahead: the window starts at
// first_window (at least kWindowRequests reads' worth) and doubles each
// time it is refilled, up to max_window. A refill is asked for once less
// than half a window lies read ahead of the front, and covers what lies
// between the furthest byte already asked for and front + window. So a
// stream asks for each byte once, in few large ranges.
//
// A read that matches no stream starts one, in place of the least recently
// used when max_streams are tracked: one stream per sequential reader (fio
// numjobs, several files on a filesystem, a copy of a snapshot beside the
// live volume), and a random reader only churns the table.
//
// Thread-safety: observe() may be called from any thread (one mutex, a leaf).
#pragma once

#include <cstdint>
#include <vector>

#include "src/util/mutex.h"

namespace portalbd {

class StreamDetector {
 public:
  struct Range {
    uint64_t offset = 0, length = 0;  // length 0: nothing to read ahead
  };

  static constexpr uint64_t kBehindRequests = 8;
  static constexpr uint64_t kAheadRequests = 2;
  static constexpr uint32_t kMinRun = 3;
  static constexpr uint64_t kWindowRequests = 4;

  StreamDetector(uint64_t first_window, uint64_t max_window, size_t max_streams = 16);

  // Notes a read of [offset, offset + length) of `view`; returns what to
  // read ahead for its stream now, if anything.
  Range observe(uint64_t view, uint64_t offset, uint64_t length) EXCLUDES(mu_);

 private:
  struct Stream {
    uint64_t view = 0;
    uint64_t front = 0;   // the furthest end read
    uint64_t asked = 0;   // the furthest end read ahead (0: none yet)
    uint64_t window = 0;  // the next refill's size, once reading ahead
    uint32_t run = 0;     // matching reads after the first
    uint64_t used = 0;    // clock_ at the last match, for LRU replacement
  };

  const uint64_t first_window_;
  const uint64_t max_window_;
  const size_t max_streams_;
  Mutex mu_;
  std::vector<Stream> streams_ GUARDED_BY(mu_);
  uint64_t clock_ GUARDED_BY(mu_) = 0;
};

}  // namespace portalbd
