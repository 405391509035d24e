// Unit tests for the replay plan (nbd/trace_plan.h): which requests wait for
// which, on small hand-written traces.
#include "nbd/trace_plan.h"

#include <doctest/doctest.h>

#include <sstream>

#include "nbd/protocol.h"

namespace portalbd::nbd {
namespace {

Result<ReplayPlan> plan_of(const std::string& body, uint64_t max_requests = 0) {
  std::istringstream in(
      "portalbd-nbd-trace v1 start_unix_ms=0\n# conn op offset length flags t_recv_us t_done_us err\n" + body);
  return plan_replay(in, max_requests);
}

}  // namespace

TEST_SUITE("nbd.trace_plan") {
  TEST_CASE("sequential requests each wait for the one before") {
    auto p = plan_of("1 WRITE 0 4096 0 10 20 0\n1 READ 0 4096 0 25 30 0\n1 FLUSH 0 0 0 30 40 0\n");
    REQUIRE(p.ok());
    CHECK(p->wait_for == std::vector<size_t>{0, 1, 2});
  }

  TEST_CASE("overlapping requests may be in flight together; arrival order, not file order") {
    // File order is answer order: B (arrived 12) was answered first.
    auto p = plan_of(
        "1 READ 8192 4096 0 12 15 0\n"  // B
        "1 WRITE 0 4096 0 10 20 0\n"    // A
        "2 FLUSH 0 0 0 18 30 0\n"       // C: after B answered, A still running
        "1 READ 0 4096 0 20 21 0\n");   // D: arrives as A is answered (same µs)
    REQUIRE(p.ok());
    REQUIRE(p->requests.size() == 4);
    CHECK(p->requests[0].t_recv_us == 10);  // A
    CHECK(p->requests[1].t_recv_us == 12);  // B
    // A and B wait for nothing; C waits for B only; D for B and A.
    CHECK(p->wait_for == std::vector<size_t>{0, 0, 1, 2});
    CHECK(p->connections == std::vector<uint32_t>{1, 2});
    CHECK(p->end_offset == 12288);

    DependencyTracker deps(*p);
    CHECK(deps.ready(1));
    CHECK_FALSE(deps.ready(2));
    deps.complete(0);  // A completes first this time: C still needs B
    CHECK_FALSE(deps.ready(2));
    deps.complete(1);
    CHECK(deps.ready(2));
    CHECK(deps.ready(3));
    CHECK(deps.completed() == 2);
  }

  TEST_CASE("zero-length answers at one instant never make a request wait on itself or a later one") {
    auto p = plan_of("1 FLUSH 0 0 0 5 5 0\n1 FLUSH 0 0 0 5 5 0\n1 FLUSH 0 0 0 5 5 0\n");
    REQUIRE(p.ok());
    CHECK(p->wait_for == std::vector<size_t>{0, 1, 2});
  }

  TEST_CASE("DISC and failed requests are left out, and counted") {
    auto p = plan_of("1 READ 1073741824 4096 0 1 2 22\n1 WRITE 0 512 1 3 4 0\n1 DISC 0 0 0 5 5 0\n");
    REQUIRE(p.ok());
    CHECK(p->requests.size() == 1);
    CHECK(p->requests[0].type == proto::kCmdWrite);
    CHECK(p->skipped_failed == 1);
    CHECK(p->skipped_disc == 1);
    CHECK(p->lines == 3);
  }

  TEST_CASE("max_requests keeps the first requests by arrival") {
    auto p = plan_of("1 READ 0 1 0 30 31 0\n1 READ 0 1 0 10 11 0\n1 READ 0 1 0 20 21 0\n", 2);
    REQUIRE(p.ok());
    REQUIRE(p->requests.size() == 2);
    CHECK(p->requests[1].t_recv_us == 20);
    CHECK(p->limit_hit == 1);
  }

  TEST_CASE("a foreign header or a malformed line is an error naming it") {
    std::istringstream foreign("hello\n");
    auto p = plan_replay(foreign);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().ToString().find("not a portalbd NBD trace") != std::string::npos);
    auto q = plan_of("1 READ 0 1 0 1 2 0\n1 READ zero 1 0 1 2 0\n");
    REQUIRE_FALSE(q.ok());
    CHECK(q.status().ToString().find("line 4") != std::string::npos);
  }
}

}  // namespace portalbd::nbd
