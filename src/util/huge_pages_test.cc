#include "src/util/huge_pages.h"

#include <doctest/doctest.h>

namespace portalbd {
namespace {

TEST_CASE("util.huge_pages: the daemon asks glibc for a huge-page heap only where it helps") {
  const std::string madvise = "always [madvise] never\n";

  SUBCASE("THP in madvise mode and no tunables: set the one tunable") {
    CHECK(heap_huge_pages_tunables(nullptr, madvise) == "glibc.malloc.hugetlb=1");
    CHECK(heap_huge_pages_tunables("", madvise) == "glibc.malloc.hugetlb=1");
  }
  SUBCASE("a user's other tunables are kept, in order") {
    CHECK(heap_huge_pages_tunables("glibc.malloc.check=3", madvise) ==
          "glibc.malloc.check=3:glibc.malloc.hugetlb=1");
  }
  SUBCASE("a hugetlb setting already there wins, so there is never a second re-execution") {
    CHECK_FALSE(heap_huge_pages_tunables("glibc.malloc.hugetlb=1", madvise));
    CHECK_FALSE(heap_huge_pages_tunables("glibc.malloc.hugetlb=0", madvise));  // the user's opt-out
    CHECK_FALSE(heap_huge_pages_tunables("glibc.malloc.check=3:glibc.malloc.hugetlb=0", madvise));
  }
  SUBCASE("THP always on, off, or absent: nothing to gain") {
    CHECK_FALSE(heap_huge_pages_tunables(nullptr, "[always] madvise never\n"));
    CHECK_FALSE(heap_huge_pages_tunables(nullptr, "always madvise [never]\n"));
    CHECK_FALSE(heap_huge_pages_tunables(nullptr, ""));  // no /sys/kernel/mm/transparent_hugepage
  }
}

}  // namespace
}  // namespace portalbd
