#include "src/util/spelling.h"

#include <doctest/doctest.h>

namespace portalbd {

TEST_SUITE("util.spelling") {
  TEST_CASE("edit distance") {
    CHECK(edit_distance("", "") == 0);
    CHECK(edit_distance("status", "status") == 0);
    CHECK(edit_distance("stauts", "status") == 2);
    CHECK(edit_distance("disk-sise-gb", "disk-size-gb") == 1);
    CHECK(edit_distance("", "gc") == 2);
  }

  TEST_CASE("closest name: near ones, abbreviations, nothing for the far") {
    const std::vector<std::string> commands{"status", "snapshot", "gc", "checkpoint", "mount", "umount"};
    CHECK(closest_name("stauts", commands) == "status");
    CHECK(closest_name("snapshto", commands) == "snapshot");
    CHECK(closest_name("check", commands) == "checkpoint");
    CHECK(closest_name("frobnicate", commands).empty());
    CHECK(closest_name("--disk-sise-gb", {"--disk-size-gb", "--state-dir"}) == "--disk-size-gb");
  }
}

}  // namespace portalbd
