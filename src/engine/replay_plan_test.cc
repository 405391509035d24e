// ReplayPlan: which losses among the segments above the index are a crash
// state (dropped: quarantined by the caller) and which are damage (refused).
#include "src/engine/replay_plan.h"

#include <doctest/doctest.h>

using namespace portalbd;

namespace {

constexpr uint32_t kWindow = 16;

// A readable format 3 segment: sealed after `prev`, which was still
// uploading then when `uncommitted`.
PendingSegment seg(uint64_t seq, uint64_t prev, bool uncommitted = false) {
  PendingSegment p;
  p.seq = seq;
  p.key = segment_key(seq);
  SegmentFooter f;
  f.seq = seq;
  f.layer = 1;
  f.prev_seq = prev;
  f.after_seq = uncommitted ? prev : 0;
  p.footer = f;
  return p;
}

PendingSegment torn(uint64_t seq) {
  PendingSegment p;
  p.seq = seq;
  p.key = segment_key(seq);
  p.error = Status::Corruption("not a segment trailer");
  return p;
}

using A = ReplayPlan::Action;

}  // namespace

TEST_SUITE("engine.replay_plan") {
  TEST_CASE("a committed predecessor that storage does not have is missing") {
    auto plan = plan_replay({seg(2, 1), seg(4, 3)}, /*base=*/1, /*committed_through=*/0, kWindow);
    REQUIRE(plan.damaged());
    REQUIRE(plan.missing.size() == 1);
    CHECK(plan.missing[0].seq == 3);
    CHECK(plan.missing[0].named_by == 4);
    CHECK(plan.decisions[1].action == A::kApply);  // applied under repair
    CHECK(plan.describe_damage().find(segment_key(3)) != std::string::npos);
  }

  TEST_CASE("a predecessor the index or a checkpoint covers is not looked for") {
    CHECK_FALSE(plan_replay({seg(9, 5)}, /*base=*/5, 0, kWindow).damaged());
    CHECK_FALSE(plan_replay({seg(9, 6)}, /*base=*/5, /*committed_through=*/7, kWindow).damaged());
    CHECK(plan_replay({seg(9, 8)}, /*base=*/5, /*committed_through=*/7, kWindow).damaged());
  }

  TEST_CASE("segments sealed behind one that never arrived are a crash's tail") {
    auto plan = plan_replay({seg(1, 0), seg(3, 2, true), seg(4, 3, true)}, 0, 0, kWindow);
    CHECK_FALSE(plan.damaged());
    CHECK(plan.decisions[0].action == A::kApply);
    CHECK(plan.decisions[1].action == A::kDropTail);
    CHECK(plan.decisions[2].action == A::kDropTail);
  }

  TEST_CASE("an uncommitted predecessor later shown committed is missing, not a crash") {
    // 3 was sealed while 2 uploaded; 4 shows 3 (so 2) committed.
    auto plan = plan_replay({seg(1, 0), seg(3, 2, true), seg(4, 3)}, 0, 0, kWindow);
    REQUIRE(plan.missing.size() == 1);
    CHECK(plan.missing[0].seq == 2);
    CHECK(plan.committed_floor == 3);
  }

  TEST_CASE("a torn segment is dropped only as the uncommitted tail") {
    auto tail = plan_replay({seg(1, 0), seg(2, 1), torn(3)}, 0, 0, kWindow);
    CHECK_FALSE(tail.damaged());
    CHECK(tail.decisions[2].action == A::kDropTail);

    auto behind = plan_replay({seg(1, 0), torn(2), seg(3, 2, true)}, 0, 0, kWindow);
    CHECK_FALSE(behind.damaged());  // 3 was sealed while 2 uploaded: both the tail
    CHECK(behind.decisions[1].action == A::kDropTail);
    CHECK(behind.decisions[2].action == A::kDropTail);

    auto committed = plan_replay({seg(1, 0), torn(2), seg(3, 2)}, 0, 0, kWindow);
    REQUIRE(committed.damaged());
    CHECK(committed.decisions[1].action == A::kDamaged);
    CHECK(committed.missing.empty());  // it is there, just unreadable
    CHECK(committed.decisions[2].action == A::kApply);
  }

  TEST_CASE("a torn segment further back than the upload window is damage, whatever the format") {
    std::vector<PendingSegment> pending{torn(1)};
    for (uint64_t s = 2; s <= kWindow + 1; ++s) {
      auto p = seg(s, 0);  // as format 2 wrote them: no predecessor named
      p.footer->version = 2;
      pending.push_back(p);
    }
    auto plan = plan_replay(pending, 0, 0, kWindow);
    CHECK(plan.decisions[0].action == A::kDamaged);
    pending.erase(pending.begin() + 1);  // one fewer after it: inside the window
    CHECK(plan_replay(pending, 0, 0, kWindow).decisions[0].action == A::kDropTail);
  }

  TEST_CASE("a segment whose footer claims another sequence is damage") {
    auto p = seg(5, 4);
    p.footer->seq = 6;
    auto plan = plan_replay({seg(4, 0), p}, 3, 0, kWindow);
    CHECK(plan.decisions[1].action == A::kDamaged);
  }

  TEST_CASE("describe_writes names the layer and byte ranges") {
    SegmentFooter f;
    f.layer = 3;
    f.entries.push_back({2, 4, 0, 0, ExtentState::kData});
    f.entries.push_back({100, 1, kNoFrame, 0, ExtentState::kZero});
    CHECK(describe_writes(f) == "layer 3: bytes 8192+16384 data, 409600+4096 zeroed");
  }
}
