#include "daemon/prune.h"

#include <algorithm>
#include <set>

namespace portalbd {
namespace {

constexpr int64_t kHourMs = 3600 * 1000;
constexpr int64_t kDayMs = 24 * kHourMs;
// 1970-01-01 was a Thursday; shifting by 3 days makes buckets start on Monday.
constexpr int64_t kWeekShiftMs = 3 * kDayMs;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Marks the newest snapshot of each of the `count` most recent buckets.
void keep_by_bucket(const std::vector<PruneCandidate>& newest_first, uint64_t count, int64_t bucket_ms,
                    int64_t shift_ms, std::set<std::string>* keep) {
  std::set<int64_t> seen;
  for (const auto& s : newest_first) {
    if (seen.size() >= count) break;
    int64_t bucket = floor_div(s.created_unix_ms + shift_ms, bucket_ms);
    if (seen.insert(bucket).second) keep->insert(s.name);
  }
}

}  // namespace

Result<PrunePlan> plan_prune(std::vector<PruneCandidate> snapshots, const PrunePolicy& policy) {
  if (!policy.any_rule()) {
    return Status::InvalidArgument(
        "prune needs at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly");
  }
  std::erase_if(snapshots, [&](const PruneCandidate& s) { return s.name.rfind(policy.prefix, 0) != 0; });
  std::stable_sort(snapshots.begin(), snapshots.end(), [](const PruneCandidate& a, const PruneCandidate& b) {
    return a.created_unix_ms > b.created_unix_ms;
  });
  std::set<std::string> keep;
  for (uint64_t i = 0; i < policy.keep_last && i < snapshots.size(); ++i) keep.insert(snapshots[i].name);
  keep_by_bucket(snapshots, policy.keep_hourly, kHourMs, 0, &keep);
  keep_by_bucket(snapshots, policy.keep_daily, kDayMs, 0, &keep);
  keep_by_bucket(snapshots, policy.keep_weekly, 7 * kDayMs, kWeekShiftMs, &keep);
  PrunePlan plan;
  for (const auto& s : snapshots) (keep.count(s.name) ? plan.keep : plan.remove).push_back(s.name);
  return plan;
}

}  // namespace portalbd
