#include "src/util/huge_pages.h"

#include <doctest/doctest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace portalbd {
namespace {

TEST_CASE("util.huge_pages: huge pages only when GLIBC_TUNABLES sets glibc.malloc.hugetlb=1") {
  CHECK_FALSE(hugetlb_tunable_on(nullptr));
  CHECK_FALSE(hugetlb_tunable_on(""));
  CHECK(hugetlb_tunable_on("glibc.malloc.hugetlb=1"));
  CHECK_FALSE(hugetlb_tunable_on("glibc.malloc.hugetlb=0"));
  // 2 is hugetlbfs pages, which glibc manages itself: not the THP heap.
  CHECK_FALSE(hugetlb_tunable_on("glibc.malloc.hugetlb=2"));
  CHECK_FALSE(hugetlb_tunable_on("glibc.malloc.hugetlb=10"));
  CHECK(hugetlb_tunable_on("glibc.malloc.check=3:glibc.malloc.hugetlb=1"));
  CHECK(hugetlb_tunable_on("glibc.malloc.hugetlb=1:glibc.malloc.tcache_count=7"));
  CHECK_FALSE(hugetlb_tunable_on("glibc.malloc.tcache_count=7"));
  CHECK_FALSE(hugetlb_tunable_on("xglibc.malloc.hugetlb=1"));
  // The last setting of a name is the one glibc keeps.
  CHECK_FALSE(hugetlb_tunable_on("glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0"));
  CHECK(hugetlb_tunable_on("glibc.malloc.hugetlb=0:glibc.malloc.hugetlb=1"));
}

// KiB of the mapping that starts at `p` backed by huge pages (its smaps entry).
long anon_huge_kib_at(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in = false;
  while (std::getline(smaps, line)) {
    unsigned long start = 0, end = 0;
    // A mapping's first line is "start-end perms ..."; the lines after it are "Key: value".
    if (std::sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2) {
      in = reinterpret_cast<uintptr_t>(p) >= start && reinterpret_cast<uintptr_t>(p) < end;
      continue;
    }
    if (in && line.rfind("AnonHugePages:", 0) == 0) return std::strtol(line.c_str() + 14, nullptr, 10);
  }
  return -1;
}

TEST_CASE("util.huge_pages: a large buffer stays on small pages unless the process asked for huge ones") {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(thp, mode);
  if (mode.find("[madvise]") == std::string::npos) {
    MESSAGE("SKIP: THP mode is '" << mode << "', not madvise: advice changes nothing here");
    return;
  }
  REQUIRE_MESSAGE(!heap_on_huge_pages(), "the unit tests run without glibc.malloc.hugetlb=1");
  constexpr size_t kBytes = 16u << 20;
  void* p = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  advise_huge_pages(p, kBytes);
  std::memset(p, 1, kBytes);
  CHECK(anon_huge_kib_at(p) == 0);
  // The same buffer advised by hand does get huge pages here: the check
  // above can tell (unless the kernel has no free huge page right now).
  void* q = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(q != MAP_FAILED);
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(q) + (2u << 20) - 1) & ~uintptr_t{(2u << 20) - 1};
  REQUIRE(::madvise(reinterpret_cast<void*>(aligned), 8u << 20, MADV_HUGEPAGE) == 0);
  std::memset(q, 1, kBytes);
  if (anon_huge_kib_at(q) == 0) MESSAGE("note: the kernel gave no huge page to a buffer advised by hand");
  ::munmap(p, kBytes);
  ::munmap(q, kBytes);
}

}  // namespace
}  // namespace portalbd
