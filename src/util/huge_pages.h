// Transparent huge pages (THP) for large, freshly allocated memory.
//
// A segment object is tens of MiB of memory that is written once, front to
// back, right after it is allocated. With 4 KiB pages that is one page fault
// per 4 KiB (16,384 for a 64 MiB segment), and on a virtual machine a fault is
// expensive. Asking the kernel for 2 MiB pages on such a buffer cuts the
// faults by 512x. It is only advice: where THP is off ("never") or no huge
// page is free, the kernel uses small pages as before.
//
// The heap is the other place: NBD write payloads (4 KiB to 32 MiB each, up
// to the write buffer's limit in flight) come from malloc, and under a burst
// of writes most of them land on memory the process has never touched. glibc
// advises huge pages for its heap when the tunable glibc.malloc.hugetlb=1 is
// set, but it reads tunables once, at process start: so the daemon sets it
// and executes itself again, first thing in main() (see docs/design.md,
// "Memory"). glibc 2.36 advises only the main arena's heap, so the daemon
// also keeps malloc to that one arena.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace portalbd {

// Advises huge pages for the 2 MiB-aligned part of [p, p+bytes). Cheap to
// call; does nothing for buffers under 4 MiB.
void advise_huge_pages(void* p, size_t bytes);

// The GLIBC_TUNABLES value to execute again with, given the current one
// (nullptr when unset) and the contents of
// /sys/kernel/mm/transparent_hugepage/enabled ("always [madvise] never").
// nullopt when there is nothing to do: THP is not in madvise mode ("always"
// gives the heap huge pages already, "never" gives none), or GLIBC_TUNABLES
// already sets glibc.malloc.hugetlb (to anything: a user's
// glibc.malloc.hugetlb=0 turns this off, and the second execution finds its
// own setting).
std::optional<std::string> heap_huge_pages_tunables(const char* current, const std::string& thp_enabled);

// Executes this program again (the path /proc/self/exe names) with argv and
// the tunable set, when heap_huge_pages_tunables says so and the process is
// not running under valgrind; returns when it does not, or when exec fails
// (the daemon then runs on small pages, slower on some machines but
// correct). Call first thing in main(), before any thread or file exists.
void reexec_for_heap_huge_pages(char** argv);

// True when this process's heap is on huge pages (the tunable is set to 1).
bool heap_on_huge_pages();

}  // namespace portalbd
