// Renders one JSON field from the daemon for people, guided by its name:
// "*_bytes" and "bytes_*" as a size, "*_s" as a duration, "*_ms" in ms,
// "*_at" (Unix seconds) and "*_unix_ms" (Unix milliseconds) as a UTC time.
// This lets portalctl show fields it has never heard of sensibly, so a newer
// daemon's status is not hidden by an older portalctl.
//
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace portalbd::ctl {

// "uptime_s" -> "uptime", "created_at" -> "created", "read_bytes" -> "read bytes".
std::string label_for_key(const std::string& key);

// The value as text: strings as is ("" -> "-"), true/false -> yes/no,
// numbers by the key's unit suffix, arrays of scalars comma-separated,
// anything else as compact JSON.
std::string format_value(const std::string& key, const nlohmann::json& value);

}  // namespace portalbd::ctl
