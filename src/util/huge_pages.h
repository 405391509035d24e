// Transparent huge pages (THP) for the daemon's memory: off unless asked for.
//
// Asked for with glibc's own tunable, set in the daemon's environment:
// GLIBC_TUNABLES=glibc.malloc.hugetlb=1. glibc reads it once, at start, and
// then advises huge pages for its heap (the main arena only, in 2.36, so the
// daemon keeps malloc to that arena); segment objects, tens of MiB written
// front to back right after they are reserved, are advised too.
//
// Why not by default (docs/design.md, "Memory"): a huge page's first touch
// makes the kernel zero 2 MiB at once, and on a virtual machine whose freed
// memory goes back to the host (free page reporting hands back exactly the
// free 2 MiB blocks a huge page is made from) each of those is a fault
// through the host. On the 2-core VM of docs/performance.md, after 12 hours
// up, a 1 GiB write to memory:// cost 4-12 s of daemon CPU on huge pages
// against 0.7-0.8 s on small ones, and cold s3:// reads halved; on the same
// VM freshly booted, huge pages had been 1.15-2x faster. A daemon runs for
// months, so small pages are the default and huge pages the user's choice.
#pragma once

#include <cstddef>

namespace portalbd {

// Advises huge pages for the 2 MiB-aligned part of [p, p+bytes) when this
// process asked for them (heap_on_huge_pages()). Cheap to call; does nothing
// for buffers under 4 MiB.
void advise_huge_pages(void* p, size_t bytes);

// True when `tunables` (a GLIBC_TUNABLES value, colon-separated name=value;
// nullptr when unset) sets glibc.malloc.hugetlb to 1.
bool hugetlb_tunable_on(const char* tunables);

// True when this process's heap is on huge pages: GLIBC_TUNABLES sets
// glibc.malloc.hugetlb=1. Read once.
bool heap_on_huge_pages();

}  // namespace portalbd
