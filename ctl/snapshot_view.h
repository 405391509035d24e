// Renders the results of the daemon's snapshot.* commands for
// `portalctl snapshot ...` (shapes in docs/control-protocol.md). Fields beyond the
// documented ones are shown too, by their names' unit suffixes.
//
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <string>

namespace portalbd::ctl {

// create, show: one snapshot object.
void render_snapshot(const nlohmann::json& snapshot, std::ostream& out);
// list: {"snapshots":[...]} as a table, in the daemon's order.
void render_snapshot_list(const nlohmann::json& result, std::ostream& out);
// delete: {"deleted":"name"}.
void render_snapshot_deleted(const nlohmann::json& result, std::ostream& out);
// restore: {"restored":"name","pre_restore":"auto-...","attached_clients":""}.
void render_snapshot_restored(const nlohmann::json& result, std::ostream& out);
// prune: {"deleted":["a",...],"kept":[...],"dry_run":false}.
void render_snapshot_pruned(const nlohmann::json& result, std::ostream& out);

// A snapshot's creation time for people, from whichever field the daemon
// sent: "created_at" (Unix s), "created_unix_ms", or "created" (text).
std::string snapshot_created_text(const nlohmann::json& snapshot);

}  // namespace portalbd::ctl
