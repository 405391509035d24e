#include "daemon/prune.h"

#include <doctest/doctest.h>

#include <algorithm>

using namespace portalbd;

namespace {
constexpr int64_t kHour = 3600 * 1000;
bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Hourly snapshots "auto-<i>" over `hours` hours starting at a Monday 00:00 UTC.
std::vector<PruneCandidate> hourly(int hours) {
  const int64_t monday = 1767571200000;  // 2026-01-05T00:00:00Z, a Monday
  std::vector<PruneCandidate> out;
  for (int i = 0; i < hours; ++i) out.push_back({"auto-" + std::to_string(i), monday + i * kHour + 5 * 60 * 1000});
  return out;
}
}  // namespace

TEST_SUITE("daemon.prune") {
  TEST_CASE("keep-last keeps exactly the newest N") {
    auto plan = plan_prune(hourly(10), {.keep_last = 3});
    REQUIRE(plan.ok());
    CHECK(plan->keep == std::vector<std::string>{"auto-9", "auto-8", "auto-7"});
    CHECK(plan->remove.size() == 7);
  }

  TEST_CASE("daily and weekly buckets keep the newest of each period") {
    auto snaps = hourly(24 * 15);  // 15 days of hourly snapshots
    auto plan = plan_prune(snaps, {.keep_last = 2, .keep_daily = 3, .keep_weekly = 3});
    REQUIRE(plan.ok());
    // Newest two, the last snapshot (23:05) of the three newest days, and
    // the last of each of the three weeks (days 0-6, 7-13, 14).
    CHECK(has(plan->keep, "auto-359"));
    CHECK(has(plan->keep, "auto-358"));
    CHECK(has(plan->keep, "auto-335"));  // day 13, 23:05
    CHECK(has(plan->keep, "auto-311"));  // day 12, 23:05
    CHECK(has(plan->keep, "auto-167"));  // Sunday of week 1
    CHECK(plan->keep.size() == 5);       // 359 is also day 14's and week 3's newest; 335 is week 2's
    CHECK(plan->keep.size() + plan->remove.size() == snaps.size());
  }

  TEST_CASE("prefix limits what prune may touch; no rule is refused") {
    auto snaps = hourly(5);
    snaps.push_back({"before-disaster", 1});
    snaps.push_back({"pre-restore-20260101T000000Z", 2});
    auto plan = plan_prune(snaps, {.keep_last = 1, .prefix = "auto-"});
    REQUIRE(plan.ok());
    CHECK(plan->keep == std::vector<std::string>{"auto-4"});
    CHECK(plan->remove.size() == 4);
    CHECK_FALSE(has(plan->remove, "before-disaster"));
    CHECK(plan_prune(snaps, {}).status().is(Status::Code::kInvalidArgument));
  }

  TEST_CASE("hourly keeps one per hour even with several per hour") {
    std::vector<PruneCandidate> s = {{"a", 0}, {"b", 10 * 60 * 1000}, {"c", kHour + 1}, {"d", kHour + 2}};
    auto plan = plan_prune(s, {.keep_hourly = 5});
    REQUIRE(plan.ok());
    CHECK(plan->keep == std::vector<std::string>{"d", "b"});
    CHECK(plan->remove == std::vector<std::string>{"c", "a"});
  }
}
