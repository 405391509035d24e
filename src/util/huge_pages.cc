#include "src/util/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace portalbd {

void advise_huge_pages(void* p, size_t bytes) {
  constexpr uintptr_t kHuge = 2u << 20;
  if (p == nullptr || bytes < 2 * kHuge || !heap_on_huge_pages()) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end <= begin) return;
  // Failure (EINVAL on a kernel without THP) leaves small pages: nothing to do.
  (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

bool hugetlb_tunable_on(const char* tunables) {
  if (tunables == nullptr) return false;
  std::string_view rest(tunables);
  bool on = false;
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string_view item = rest.substr(0, colon);
    // glibc takes the last setting of a name.
    if (item.starts_with("glibc.malloc.hugetlb=")) on = item == "glibc.malloc.hugetlb=1";
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
  }
  return on;
}

bool heap_on_huge_pages() {
  static const bool on = hugetlb_tunable_on(std::getenv("GLIBC_TUNABLES"));
  return on;
}

}  // namespace portalbd
