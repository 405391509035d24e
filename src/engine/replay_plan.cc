#include "src/engine/replay_plan.h"

#include <algorithm>
#include <set>

namespace portalbd {

bool ReplayPlan::damaged() const {
  return !missing.empty() || std::any_of(decisions.begin(), decisions.end(),
                                         [](const Decision& d) { return d.action == Action::kDamaged; });
}

std::string ReplayPlan::describe_damage() const {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
  for (const auto& m : missing) {
    add(segment_key(m.seq) + " is missing (" + segment_key(m.named_by) + " names it as its committed predecessor)");
  }
  for (const auto& d : decisions) {
    if (d.action == Action::kDamaged) add(d.key + ": " + d.why);
  }
  return out;
}

std::string describe_writes(const SegmentFooter& footer) {
  std::string out = "layer " + std::to_string(footer.layer) + ":";
  constexpr size_t kShown = 16;
  for (size_t i = 0; i < footer.entries.size() && i < kShown; ++i) {
    const SegmentEntry& e = footer.entries[i];
    out += (i == 0 ? " bytes " : ", ") + std::to_string(e.lba * kBlockSize) + "+" +
           std::to_string(e.nblocks * kBlockSize) +
           (e.state == ExtentState::kData   ? " data"
            : e.state == ExtentState::kZero ? " zeroed"
                                            : " trimmed");
  }
  if (footer.entries.size() > kShown) out += ", and " + std::to_string(footer.entries.size() - kShown) + " more ranges";
  if (footer.entries.empty()) out += " nothing";
  return out;
}

ReplayPlan plan_replay(const std::vector<PendingSegment>& pending, uint64_t base, uint64_t committed_through,
                       uint32_t upload_window) {
  ReplayPlan plan;
  const size_t n = pending.size();
  plan.decisions.resize(n);
  std::set<uint64_t> listed;
  for (const auto& p : pending) {
    listed.insert(p.seq);
    // Named with after_seq == 0: committed before p was sealed.
    if (p.footer && p.footer->seq == p.seq && p.footer->version >= 3 && p.footer->after_seq == 0) {
      plan.committed_floor = std::max(plan.committed_floor, p.footer->prev_seq);
    }
  }
  std::set<uint64_t> applied, missing;
  // A predecessor this call must find among the pending segments.
  auto unresolved = [&](uint64_t pred) {
    return pred != 0 && pred > base && pred > committed_through && !applied.count(pred);
  };
  // A committed predecessor storage does not list. (One it lists but could
  // not use is damage of its own, decided where it is.)
  auto note_missing = [&](uint64_t pred, uint64_t named_by) {
    if (!listed.count(pred) && missing.insert(pred).second) plan.missing.push_back({pred, named_by});
  };
  for (size_t i = 0; i < n; ++i) {
    const PendingSegment& p = pending[i];
    ReplayPlan::Decision& d = plan.decisions[i];
    d.key = p.key;
    // Up to upload_window uploads may have been in flight at a crash (U1).
    const bool in_window = n - i <= upload_window;
    auto damaged = [&](std::string why) {
      d.action = ReplayPlan::Action::kDamaged;
      d.why = std::move(why);
    };
    if (!p.footer) {
      const std::string error = p.error.message();
      if (p.seq <= plan.committed_floor) {
        damaged("unreadable (" + error + "), though a later segment shows it was committed");
      } else if (in_window) {
        d.action = ReplayPlan::Action::kDropTail;
        d.why = "torn among the last uploads of a crash (" + error + ")";
      } else {
        damaged("unreadable (" + error + "), with " + std::to_string(n - i - 1) +
                " segments after it, more than a crash can leave uploading");
      }
      continue;
    }
    const SegmentFooter& f = *p.footer;
    if (f.seq != p.seq) {
      damaged("its footer claims sequence " + std::to_string(f.seq));
      continue;
    }
    if (unresolved(f.after_seq)) {
      // Sealed while after_seq was uploading, which storage does not have (or
      // could not use).
      if (f.after_seq <= plan.committed_floor) {
        // ... yet a later segment shows it was committed: lost, not a crash.
        note_missing(f.after_seq, f.seq);
      } else if (in_window) {
        d.action = ReplayPlan::Action::kDropTail;
        d.why = "sealed behind " + segment_key(f.after_seq) + ", which storage does not have";
        continue;
      } else {
        damaged("follows " + segment_key(f.after_seq) + ", which is missing");
        continue;
      }
    } else if (f.after_seq == 0 && unresolved(f.prev_seq)) {
      // Format 3: the predecessor was committed before this one was sealed.
      note_missing(f.prev_seq, f.seq);
    }
    applied.insert(f.seq);
  }
  return plan;
}

}  // namespace portalbd
