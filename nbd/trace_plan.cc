#include "nbd/trace_plan.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "nbd/protocol.h"

namespace portalbd::nbd {

Result<ReplayPlan> plan_replay(std::istream& in, uint64_t max_requests) {
  ReplayPlan plan;
  std::string line;
  if (!std::getline(in, line) || !is_trace_header(line)) {
    return Status::InvalidArgument("not a portalbd NBD trace (version " + std::to_string(kTraceVersion) +
                                   "): the first line is \"" + line.substr(0, 80) + "\"");
  }
  uint64_t line_no = 1;
  std::vector<TraceRecord> all;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    TraceRecord r;
    if (!parse_trace_line(line, &r)) {
      return Status::InvalidArgument("trace line " + std::to_string(line_no) + " is malformed: \"" +
                                     line.substr(0, 80) + "\"");
    }
    ++plan.lines;
    if (r.type == proto::kCmdDisc) {
      ++plan.skipped_disc;
    } else if (r.error != 0) {
      ++plan.skipped_failed;
    } else {
      all.push_back(r);
    }
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const TraceRecord& a, const TraceRecord& b) { return a.t_recv_us < b.t_recv_us; });
  if (max_requests > 0 && all.size() > max_requests) {
    all.resize(max_requests);
    plan.limit_hit = 1;
  }
  plan.requests = std::move(all);
  const std::vector<TraceRecord>& reqs = plan.requests;

  plan.done_order.resize(reqs.size());
  std::iota(plan.done_order.begin(), plan.done_order.end(), size_t{0});
  std::sort(plan.done_order.begin(), plan.done_order.end(), [&](size_t a, size_t b) {
    return reqs[a].t_done_us != reqs[b].t_done_us ? reqs[a].t_done_us < reqs[b].t_done_us : a < b;
  });
  // wait_for[j] = #{i : (t_done_i, i) < (t_recv_j, j)}; both sides grow with j.
  plan.wait_for.resize(reqs.size());
  size_t k = 0;
  for (size_t j = 0; j < reqs.size(); ++j) {
    while (k < reqs.size()) {
      size_t i = plan.done_order[k];
      bool before = reqs[i].t_done_us < reqs[j].t_recv_us || (reqs[i].t_done_us == reqs[j].t_recv_us && i < j);
      if (!before) break;
      ++k;
    }
    plan.wait_for[j] = k;
  }

  std::set<uint32_t> conns;
  for (const TraceRecord& r : reqs) {
    conns.insert(r.conn);
    if (r.type != proto::kCmdFlush) plan.end_offset = std::max(plan.end_offset, r.offset + r.length);
  }
  plan.connections.assign(conns.begin(), conns.end());
  return plan;
}

DependencyTracker::DependencyTracker(const ReplayPlan& plan) : plan_(plan), completed_(plan.requests.size()) {}

void DependencyTracker::reset() {
  completed_.assign(plan_.requests.size(), false);
  frontier_ = 0;
  completed_count_ = 0;
}

void DependencyTracker::complete(size_t i) {
  completed_[i] = true;
  ++completed_count_;
  while (frontier_ < plan_.done_order.size() && completed_[plan_.done_order[frontier_]]) ++frontier_;
}

}  // namespace portalbd::nbd
