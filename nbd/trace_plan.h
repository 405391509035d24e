// Replay plan: turns a request trace (nbd/trace.h) into the order and the
// dependencies in which bench/nbd_replay issues it again.
//
// The rule that keeps the trace's concurrency: request j may be issued once
// every request answered before j was received has completed. Requests
// answered later were in flight together with j in the recorded run, and may
// be again. With requests numbered in order of arrival (ties: file order) and
// the answered ones ordered by (t_done_us, number), the requests j waits for
// are exactly a prefix of that order, of length wait_for[j]; the prefix only
// holds requests numbered below j, so a replay can never wait on itself.
//
// Thread-safety: ReplayPlan is a value; DependencyTracker is not synchronised
// (one event loop drives it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "nbd/trace.h"
#include "src/util/status.h"

namespace portalbd::nbd {

struct ReplayPlan {
  std::vector<TraceRecord> requests;  // by arrival; without DISC and without requests that failed
  std::vector<size_t> done_order;     // indices into requests by (t_done_us, index)
  std::vector<size_t> wait_for;       // per request: how long a prefix of done_order must be complete
  std::vector<uint32_t> connections;  // the distinct conn numbers of `requests`, ascending
  uint64_t skipped_disc = 0;          // DISC lines (connections end on their own)
  uint64_t skipped_failed = 0;        // requests the recorded server answered with an error
  uint64_t end_offset = 0;            // highest offset + length any request touches
  uint64_t lines = 0;                 // request lines read
  uint64_t limit_hit = 0;             // 1 when max_requests cut the trace short
};

// Reads a version-1 trace. Fails on a missing or foreign header and on a
// malformed line (the error names the line number). max_requests > 0 keeps
// only the first that many requests by arrival.
Result<ReplayPlan> plan_replay(std::istream& in, uint64_t max_requests = 0);

// Which requests may be issued, as completions arrive in any order.
class DependencyTracker {
 public:
  explicit DependencyTracker(const ReplayPlan& plan);
  // REQUIRES: request i was issued and has not completed before.
  void complete(size_t i);
  bool ready(size_t j) const { return frontier_ >= plan_.wait_for[j]; }
  size_t completed() const { return completed_count_; }
  // Back to nothing completed, for another pass over the same plan.
  void reset();

 private:
  const ReplayPlan& plan_;
  std::vector<bool> completed_;
  size_t frontier_ = 0;  // done_order[0, frontier_) have all completed
  size_t completed_count_ = 0;
};

}  // namespace portalbd::nbd
