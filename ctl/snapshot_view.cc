#include "ctl/snapshot_view.h"

#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

#include "ctl/kv_list.h"
#include "ctl/value_format.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

std::string text_field(const json& obj, const char* key) {
  if (!obj.is_object()) return "-";
  auto it = obj.find(key);
  return it == obj.end() ? "-" : format_value(key, *it);
}

void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

}  // namespace

void render_snapshot(const json& snapshot, std::ostream& out) {
  if (!snapshot.is_object()) {
    out << format_value("", snapshot) << "\n";
    return;
  }
  KeyValueList list;
  list.heading("Snapshot", text_field(snapshot, "name"));
  for (const char* key : {"id", "created_at"}) {
    if (snapshot.contains(key)) list.add(label_for_key(key), text_field(snapshot, key), 1);
  }
  for (const auto& [k, v] : snapshot.items()) {
    if (k != "name" && k != "id" && k != "created_at") list.add(label_for_key(k), format_value(k, v), 1);
  }
  list.print(out);
}

void render_snapshot_list(const json& result, std::ostream& out) {
  const json* snaps = &result;
  if (result.is_object() && result.contains("snapshots")) snaps = &result["snapshots"];
  if (!snaps->is_array()) {
    out << format_value("", *snaps) << "\n";
    return;
  }
  if (snaps->empty()) {
    out << "No snapshots.\n";
    return;
  }
  // Automatic snapshots (kept by restore) get a column only when present.
  const bool any_auto = std::any_of(snaps->begin(), snaps->end(), [](const json& s) {
    return s.is_object() && s.value("auto", false) == true;
  });
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NAME", "CREATED", "ID"});
  if (any_auto) rows[0].push_back("KIND");
  for (const auto& s : *snaps) {
    rows.push_back({text_field(s, "name"), text_field(s, "created_at"), text_field(s, "id")});
    if (any_auto) rows.back().push_back(s.is_object() && s.value("auto", false) ? "auto" : "manual");
  }
  print_table(rows, out);
}

void render_snapshot_deleted(const json& result, std::ostream& out) {
  out << "Deleted snapshot " << text_field(result, "deleted") << "\n";
}

void render_snapshot_restored(const json& result, std::ostream& out) {
  out << "Restored snapshot " << text_field(result, "restored") << "\n";
  if (result.is_object() && result.contains("backup")) {
    const std::string backup = text_field(result, "backup");
    out << "The state it replaced is kept as snapshot " << backup << " (undo: portalctl snapshot restore "
        << backup << ")\n";
  }
}

void render_snapshot_pruned(const json& result, std::ostream& out) {
  const bool dry_run = result.is_object() && result.value("dry_run", false) == true;
  const json deleted = result.is_object() ? result.value("deleted", json::array()) : json::array();
  if (!deleted.is_array() || deleted.empty()) {
    out << "Nothing to prune.\n";
    return;
  }
  out << (dry_run ? "Would delete " : "Deleted ") << deleted.size()
      << (deleted.size() == 1 ? " snapshot" : " snapshots") << (dry_run ? " (dry run):" : ":") << "\n";
  for (const auto& name : deleted) out << "  " << format_value("", name) << "\n";
}

}  // namespace portalbd::ctl
