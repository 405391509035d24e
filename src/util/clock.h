// Wall-clock helpers shared by the engine, daemon and logs: the current Unix
// time in milliseconds and its UTC renderings.
// Thread-safety: pure functions (gmtime_r).
#pragma once

#include <cstdint>
#include <string>

namespace portalbd {

int64_t now_unix_ms();
// "2026-01-07T02:58:02Z"
std::string rfc3339_utc(int64_t unix_ms);
// "20260107T025802Z", for names (pre-restore-..., auto-...).
std::string compact_utc(int64_t unix_ms);

}  // namespace portalbd
