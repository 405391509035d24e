// Snapshot retention ("prune"): which snapshots a policy keeps.
//
// Like restic's and borg's policies: among the snapshots whose name starts
// with `prefix`, newest first,
//   keep_last N    keeps the N newest;
//   keep_hourly N  keeps the newest snapshot of each of the N most recent
//                  hours that have one (likewise daily, weekly; UTC buckets;
//                  weeks start on Monday).
// A snapshot kept by any rule is kept; every other matching one is deleted.
// Snapshots outside the prefix are never touched.
//
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/util/status.h"

namespace portalbd {

struct PrunePolicy {
  uint64_t keep_last = 0, keep_hourly = 0, keep_daily = 0, keep_weekly = 0;
  std::string prefix;
  bool any_rule() const { return keep_last + keep_hourly + keep_daily + keep_weekly > 0; }
};

struct PruneCandidate {
  std::string name;
  int64_t created_unix_ms = 0;
};

struct PrunePlan {
  std::vector<std::string> keep;    // newest first
  std::vector<std::string> remove;  // newest first
};

// kInvalidArgument when the policy has no rule (it would delete everything).
Result<PrunePlan> plan_prune(std::vector<PruneCandidate> snapshots, const PrunePolicy& policy);

}  // namespace portalbd
