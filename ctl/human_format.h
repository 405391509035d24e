// Formatting numbers for people: sizes in binary units, durations, times.
// Used by portalctl's human output; --json output never goes through here.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

namespace portalbd::ctl {

// 0 -> "0 B", 1536 -> "1.5 KiB", 1073741824 -> "1 GiB", 2^60 -> "1 EiB".
std::string format_bytes(uint64_t bytes);
// "1 GiB (1073741824 bytes)": both, for sizes users compare with other tools.
std::string format_bytes_exact(uint64_t bytes);
// The two largest units: 42 -> "42s", 3725 -> "1h 2m", 90061 -> "1d 1h".
std::string format_duration_s(uint64_t seconds);
// Unix seconds -> "2026-01-07 03:24:43 UTC".
std::string format_unix_time(int64_t seconds);
// 1234567 -> "1,234,567".
std::string format_count(uint64_t n);

}  // namespace portalbd::ctl
