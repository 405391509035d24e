// Transparent huge pages for large, freshly allocated buffers.
//
// A segment object is tens of MiB of memory that is written once, front to
// back, right after it is allocated. With 4 KiB pages that is one page fault
// per 4 KiB (16,384 for a 64 MiB segment), and on a virtual machine a fault is
// expensive. Asking the kernel for 2 MiB pages on such a buffer cuts the
// faults by 512x. It is only advice: where THP is off ("never") or no huge
// page is free, the kernel uses small pages as before.
#pragma once

#include <cstddef>

namespace portalbd {

// Advises huge pages for the 2 MiB-aligned part of [p, p+bytes). Cheap to
// call; does nothing for buffers under 4 MiB.
void advise_huge_pages(void* p, size_t bytes);

}  // namespace portalbd
