// closest_name(): "did you mean" for command lines. Given what the user typed
// and the names that exist, the one most likely meant, by edit distance.
// Used by portalbd's flags (src/config/cli.cc) and portalctl's commands
// (ctl/portalctl.cc).
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

namespace portalbd {

// Levenshtein distance: insertions, deletions and substitutions of one byte.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `typed`, if it is at most `max_distance` edits away
// or starts with `typed`; "" when none is close. Ties go to the first.
std::string closest_name(const std::string& typed, const std::vector<std::string>& candidates, size_t max_distance = 2);

}  // namespace portalbd
