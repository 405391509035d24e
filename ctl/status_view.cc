#include "ctl/status_view.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "ctl/kv_list.h"
#include "ctl/value_format.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

struct Field {
  const char* key;
  const char* label;
  const char* if_empty;  // shown for "" (e.g. an NBD listener that is off)
};

// The daemon's status fields, in display order (docs/control-protocol.md lists them).
constexpr Field kFields[] = {
    {"version", "version", "-"},
    {"export", "export", "-"},
    {"size_bytes", "size", "-"},
    {"storage", "storage", "-"},
    {"nbd_address", "NBD address", "off"},
    {"nbd_unix", "NBD unix socket", "none"},
    {"control_socket", "control socket", "-"},
    {"state_dir", "state dir", "-"},
    {"dirty_bytes", "dirty", "-"},
    {"bytes_stored", "stored", "-"},
    {"bytes_live", "live data", "-"},
    {"segments", "segments", "-"},
    {"last_checkpoint", "last checkpoint", "never"},
    {"storage_failing_since", "storage failing since", "no (healthy)"},
    {"last_storage_error", "last storage error", "-"},
    {"snapshots", "snapshots", "-"},
    {"uptime_s", "uptime", "-"},
};

void add_clients(const json& clients, KeyValueList* list) {
  if (!clients.is_array()) {
    list->add("clients", format_value("clients", clients));
    return;
  }
  list->heading("clients", std::to_string(clients.size()));
  auto peer_of = [](const json& c) { return c.contains("peer") ? format_value("peer", c["peer"]) : "?"; };
  size_t peer_width = 0;
  for (const auto& c : clients) {
    if (c.is_object()) peer_width = std::max(peer_width, peer_of(c).size());
  }
  for (const auto& c : clients) {
    if (!c.is_object()) {
      list->line(format_value("", c), 1);
      continue;
    }
    // "peer  export=<name>  other=..." : peer first, it identifies the client.
    std::string text = peer_of(c);
    text.resize(peer_width, ' ');
    for (const auto& [k, v] : c.items()) {
      if (k == "peer") continue;
      std::string label = label_for_key(k);  // "connected_unix_ms" -> "connected"
      std::replace(label.begin(), label.end(), ' ', '_');
      text += "  " + label + "=" + format_value(k, v);
    }
    list->line(text, 1);
  }
}

void add_object(const std::string& label, const json& obj, KeyValueList* list) {
  list->heading(label);
  if (obj.empty()) list->line("-", 1);
  for (const auto& [k, v] : obj.items()) list->add(label_for_key(k), format_value(k, v), 1);
}

// "store_requests"/"lease_requests": the total on the heading, the count of
// each request type on one line, in the protocol's order, then the bytes.
void add_requests(const std::string& label, const json& requests, KeyValueList* list) {
  static constexpr const char* kTypes[] = {"put", "put_if_absent", "get", "get_range", "head", "list", "remove"};
  auto total = requests.find("total");
  list->heading(label, total == requests.end() ? "" : format_value("total", *total));
  std::string by_type;
  for (const char* type : kTypes) {
    auto it = requests.find(type);
    if (it == requests.end()) continue;
    by_type += (by_type.empty() ? "" : "  ") + std::string(type) + "=" + format_value(type, *it);
  }
  if (!by_type.empty()) list->line(by_type, 1);
  for (const auto& [k, v] : requests.items()) {
    if (k == "total" || std::find(std::begin(kTypes), std::end(kTypes), k) != std::end(kTypes)) continue;
    list->add(label_for_key(k), format_value(k, v), 1);
  }
}

// A field not in kFields, or "clients"/"counters" of an unexpected shape.
void add_other(const std::string& key, const json& v, KeyValueList* list) {
  if (v.is_object()) {
    add_object(label_for_key(key), v, list);
  } else {
    list->add(label_for_key(key), format_value(key, v));
  }
}

}  // namespace

void render_status(const json& status, std::ostream& out) {
  if (!status.is_object()) {
    out << format_value("", status) << "\n";
    return;
  }
  KeyValueList list;
  std::set<std::string> shown;
  for (const Field& f : kFields) {
    auto it = status.find(f.key);
    if (it == status.end()) continue;
    shown.insert(f.key);
    std::string value =
        (it->is_string() && it->get_ref<const std::string&>().empty()) ? f.if_empty : format_value(f.key, *it);
    list.add(f.label, value);
  }
  if (auto it = status.find("clients"); it != status.end()) {
    shown.insert("clients");
    add_clients(*it, &list);
  }
  for (const char* key : {"store_requests", "lease_requests"}) {
    auto it = status.find(key);
    if (it == status.end() || !it->is_object()) continue;
    shown.insert(key);
    add_requests(label_for_key(key), *it, &list);
  }
  for (const auto& [k, v] : status.items()) {
    if (shown.count(k) == 0 && k != "counters") add_other(k, v, &list);
  }
  // Counters last: the longest block, and the least often read.
  if (auto it = status.find("counters"); it != status.end()) add_other("counters", *it, &list);
  list.print(out);
}

}  // namespace portalbd::ctl
