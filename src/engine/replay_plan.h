// ReplayPlan: what open() does with the segments in storage that the index
// has not applied yet — a pure decision, kept apart from the I/O so every
// damaged-storage case is testable on its own (replay_plan_test.cc).
//
// Which losses are a legal crash state (invariant 3 in volume.h) and which
// are damage:
//   * A segment is COMMITTED when a later segment names it as its
//     predecessor with after_seq == 0 (it was committed before that one was
//     sealed); commits follow sequence order, so everything at or below the
//     newest such predecessor (committed_floor) was committed too.
//   * Only the uncommitted tail may be dropped: a torn segment above
//     committed_floor among the last upload_window, and every segment
//     sealed behind one storage does not have (after_seq). Dropped objects
//     are quarantined by the caller, never deleted.
//   * Anything else is damage: a torn segment further back or at or below
//     committed_floor, a segment that claims another sequence number, and a
//     predecessor that storage does not have although it was committed (a
//     segment missing from the middle of the log). The caller refuses to
//     open, unless told to repair: then damaged objects are quarantined,
//     missing ones accepted as lost, and the rest applied.
//   * A predecessor at or below `base` (what the index or checkpoint holds)
//     or `committed_through` (a checkpoint covers it: GC may have deleted
//     it) is not looked for here; the index's own references are checked
//     against the listing after the layers load (Volume::check_references).
//
// Segments written before format 3 (no prev_seq) can only be checked
// through after_seq, as before.
//
// Thread-safety: pure functions over values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/format/segment.h"
#include "src/util/status.h"

namespace portalbd {

// One segment object above the index's last sequence number, as listed and
// read: its footer, or why it could not be read.
struct PendingSegment {
  uint64_t seq = 0;  // from its key
  std::string key;
  uint64_t size = 0;
  std::optional<SegmentFooter> footer;  // empty: unreadable (`error`)
  Status error;
  bool entries_dropped = false;  // footer holds the header only (a memory bound); the caller reads it again
};

struct ReplayPlan {
  enum class Action : uint8_t {
    kApply,     // replay it into the index
    kDropTail,  // uncommitted tail of a crash: quarantine, a warning
    kDamaged,   // damage: refuse, or quarantine under repair
  };
  struct Decision {
    Action action = Action::kApply;
    std::string key;
    std::string why;  // for kDropTail and kDamaged
  };
  std::vector<Decision> decisions;  // one per pending segment, same order
  // Committed segments storage does not have, each with the segment that
  // names it: damage.
  struct Missing {
    uint64_t seq = 0;
    uint64_t named_by = 0;
  };
  std::vector<Missing> missing;
  uint64_t committed_floor = 0;

  bool damaged() const;
  // "segments/…5.seg is missing (segments/…6.seg follows it); segments/…9.seg:
  // torn (…)": every piece of damage, for the refusal and the repair log.
  std::string describe_damage() const;
};

// What a segment wrote, for a log line: "layer 3: bytes 0+262144 data,
// 1048576+8192 zeroed, ..." (at most 16 ranges, then how many more).
std::string describe_writes(const SegmentFooter& footer);

// `pending` in ascending sequence order. `base`: the index's last applied
// sequence; `committed_through`: the newest checkpoint's sequence (0: none);
// `upload_window`: the most uploads a crash can leave in flight
// (kMaxUploadWindow).
ReplayPlan plan_replay(const std::vector<PendingSegment>& pending, uint64_t base, uint64_t committed_through,
                       uint32_t upload_window);

}  // namespace portalbd
