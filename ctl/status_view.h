// Renders the daemon's "status" result for `portalctl status`.
//
// Known fields come first, in an order that reads top-down (identity, where
// data lives, how busy, who is connected); any other field the daemon sends
// follows, rendered by its name's unit suffix (see value_format.h).
//
// Thread-safety: pure function.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <ostream>

namespace portalbd::ctl {

void render_status(const nlohmann::json& status, std::ostream& out);

}  // namespace portalbd::ctl
