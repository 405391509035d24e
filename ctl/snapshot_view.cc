#include "ctl/snapshot_view.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "ctl/human_format.h"
#include "ctl/kv_list.h"
#include "ctl/value_format.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

// Creation-time fields: shown once, as "created".
bool is_created_field(const std::string& key) {
  return key == "created" || key == "created_at" || key == "created_unix_ms";
}

std::string text_field(const json& obj, const char* key) {
  if (!obj.is_object()) return "-";
  auto it = obj.find(key);
  return it == obj.end() ? "-" : format_value(key, *it);
}

bool any_has(const json& list, const char* key) {
  return std::any_of(list.begin(), list.end(), [key](const json& s) { return s.is_object() && s.contains(key); });
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

std::string snapshot_created_text(const json& s) {
  if (!s.is_object()) return "-";
  if (auto it = s.find("created_at"); it != s.end() && it->is_number()) return format_value("created_at", *it);
  if (auto it = s.find("created_unix_ms"); it != s.end() && it->is_number()) {
    return format_value("created_unix_ms", *it);
  }
  return text_field(s, "created");
}

void render_snapshot(const json& snapshot, std::ostream& out) {
  if (!snapshot.is_object()) {
    out << format_value("", snapshot) << "\n";
    return;
  }
  KeyValueList list;
  list.heading("Snapshot", text_field(snapshot, "name"));
  if (snapshot.contains("id")) list.add("id", text_field(snapshot, "id"), 1);
  list.add("created", snapshot_created_text(snapshot), 1);
  for (const auto& [k, v] : snapshot.items()) {
    if (k != "name" && k != "id" && !is_created_field(k)) list.add(label_for_key(k), format_value(k, v), 1);
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
  // Optional columns appear only when the daemon sends them.
  const bool written = any_has(*snaps, "written_bytes");
  const bool exports = any_has(*snaps, "export");
  const bool kind = std::any_of(snaps->begin(), snaps->end(),
                                [](const json& s) { return s.is_object() && s.value("auto", false) == true; });
  std::vector<std::vector<std::string>> rows(1);
  rows[0] = {"NAME", "CREATED"};
  if (written) rows[0].push_back("WRITTEN");
  if (kind) rows[0].push_back("KIND");
  if (exports) rows[0].push_back("EXPORT");
  rows[0].push_back("ID");
  for (const auto& s : *snaps) {
    std::vector<std::string> row = {text_field(s, "name"), snapshot_created_text(s)};
    if (written) {
      row.push_back(s.is_object() && s.contains("written_bytes") && s["written_bytes"].is_number_unsigned()
                        ? format_bytes(s["written_bytes"].get<uint64_t>())
                        : "-");
    }
    if (kind) row.push_back(s.is_object() && s.value("auto", false) ? "auto" : "manual");
    if (exports) row.push_back(text_field(s, "export"));
    row.push_back(text_field(s, "id"));
    rows.push_back(std::move(row));
  }
  print_table(rows, out);
}

void render_snapshot_deleted(const json& result, std::ostream& out) {
  out << "Deleted snapshot " << text_field(result, "deleted") << "\n";
}

void render_snapshot_restored(const json& result, std::ostream& out) {
  out << "Restored snapshot " << text_field(result, "restored") << "\n";
  for (const char* key : {"pre_restore", "backup"}) {
    auto it = result.is_object() ? result.find(key) : result.end();
    if (it == result.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) continue;
    const std::string kept = it->get<std::string>();
    out << "The state it replaced is kept as snapshot " << kept << " (undo: portalctl snapshot restore " << kept
        << ")\n";
    break;
  }
  const std::string attached = result.is_object() ? result.value("attached_clients", std::string()) : "";
  if (!attached.empty()) {
    out << "Warning: clients were attached (" << attached
        << "); their page caches still hold the replaced data. Before mounting again, detach and reattach the "
           "device, or drop its cached pages (blockdev --flushbufs DEVICE).\n";
  }
}

void render_snapshot_pruned(const json& result, std::ostream& out) {
  const bool dry_run = result.is_object() && result.value("dry_run", false) == true;
  const json deleted = result.is_object() ? result.value("deleted", json::array()) : json::array();
  const json kept = result.is_object() ? result.value("kept", json()) : json();
  if (!deleted.is_array() || deleted.empty()) {
    out << "Nothing to prune.\n";
  } else {
    out << (dry_run ? "Would delete " : "Deleted ") << deleted.size()
        << (deleted.size() == 1 ? " snapshot" : " snapshots") << (dry_run ? " (dry run):" : ":") << "\n";
    for (const auto& name : deleted) out << "  " << format_value("", name) << "\n";
  }
  if (kept.is_array()) out << (dry_run ? "Would keep " : "Kept ") << kept.size() << "\n";
}

}  // namespace portalbd::ctl
