#include "src/util/huge_pages.h"

#include <limits.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace portalbd {
namespace {
constexpr char kHugeTunable[] = "glibc.malloc.hugetlb";

// The kernel's THP mode line, "" without THP. The file is closed on return:
// open across the execv in reexec_for_heap_huge_pages (an ifstream is not
// close-on-exec), its descriptor would stay with the daemon for its life.
std::string thp_enabled_line() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(in, mode);
  return mode;
}
}  // namespace

void advise_huge_pages(void* p, size_t bytes) {
  constexpr uintptr_t kHuge = 2u << 20;
  if (p == nullptr || bytes < 2 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end <= begin) return;
  // Failure (EINVAL on a kernel without THP) leaves small pages: nothing to do.
  (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

std::optional<std::string> heap_huge_pages_tunables(const char* current, const std::string& thp_enabled) {
  // The kernel brackets the mode in force: "always [madvise] never".
  if (thp_enabled.find("[madvise]") == std::string::npos) return std::nullopt;
  const std::string now = current != nullptr ? current : "";
  if (now.find(kHugeTunable) != std::string::npos) return std::nullopt;
  // GLIBC_TUNABLES is a colon-separated list of name=value.
  return now.empty() ? std::string(kHugeTunable) + "=1" : now + ":" + kHugeTunable + "=1";
}

void reexec_for_heap_huge_pages(char** argv) {
  const std::string mode = thp_enabled_line();
  const char* before = std::getenv("GLIBC_TUNABLES");
  const auto tunables = heap_huge_pages_tunables(before, mode);
  if (!tunables) return;
  // Under valgrind, an exec would leave it (it follows no exec unless told):
  // stay on small pages there. Its preloaded core is how to tell.
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload != nullptr && std::strstr(preload, "vgpreload") != nullptr) return;
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return;
  self[n] = '\0';
  const std::string saved = before != nullptr ? before : "";
  if (::setenv("GLIBC_TUNABLES", tunables->c_str(), 1) != 0) return;
  ::execv(self, argv);
  // Still here: exec failed (the binary was deleted, say). Run on without
  // huge pages, and say so truthfully to heap_on_huge_pages() and to child
  // processes.
  if (before != nullptr) {
    ::setenv("GLIBC_TUNABLES", saved.c_str(), 1);
  } else {
    ::unsetenv("GLIBC_TUNABLES");
  }
}

bool heap_on_huge_pages() {
  const char* t = std::getenv("GLIBC_TUNABLES");
  return t != nullptr && std::string(t).find(std::string(kHugeTunable) + "=1") != std::string::npos;
}

}  // namespace portalbd
