#include "csi/registry.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <random>

#include "csi/assign_or_return.h"

namespace portalbd::csi {
namespace {

using json = nlohmann::json;

constexpr const char* kNames = "_csi/names/";
constexpr const char* kVolumes = "_csi/volumes/";
constexpr const char* kSnapNames = "_csi/snapnames/";
constexpr const char* kSnapshots = "_csi/snapshots/";

std::string random_hex(int digits) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < digits; ++i) out += kHex[rng() % 16];
  return out;
}

json to_json(const VolumeRecord& v) {
  return {{"id", v.id},
          {"name", v.name},
          {"storage_url", v.storage_url},
          {"capacity_bytes", v.capacity_bytes},
          {"source_snapshot_id", v.source_snapshot_id},
          {"source_volume_id", v.source_volume_id},
          {"created_unix_ms", v.created_unix_ms},
          {"deleted", v.deleted},
          {"snapshot_reader", v.snapshot_reader}};
}

VolumeRecord volume_from_json(const json& j) {
  VolumeRecord v;
  v.id = j.at("id").get<std::string>();
  v.name = j.value("name", "");
  v.storage_url = j.at("storage_url").get<std::string>();
  v.capacity_bytes = j.at("capacity_bytes").get<uint64_t>();
  v.source_snapshot_id = j.value("source_snapshot_id", "");
  v.source_volume_id = j.value("source_volume_id", "");
  v.created_unix_ms = j.value("created_unix_ms", int64_t{0});
  v.deleted = j.value("deleted", false);
  v.snapshot_reader = j.value("snapshot_reader", false);
  return v;
}

json to_json(const SnapshotRecord& s) {
  return {{"id", s.id},
          {"name", s.name},
          {"volume_id", s.volume_id},
          {"engine_name", s.engine_name},
          {"size_bytes", s.size_bytes},
          {"created_unix_ms", s.created_unix_ms},
          {"deleted", s.deleted}};
}

SnapshotRecord snapshot_from_json(const json& j) {
  SnapshotRecord s;
  s.id = j.at("id").get<std::string>();
  s.name = j.value("name", "");
  s.volume_id = j.at("volume_id").get<std::string>();
  s.engine_name = j.at("engine_name").get<std::string>();
  s.size_bytes = j.value("size_bytes", uint64_t{0});
  s.created_unix_ms = j.value("created_unix_ms", int64_t{0});
  s.deleted = j.value("deleted", false);
  return s;
}

// Parses a record, turning a malformed one into kCorruption naming the key.
template <typename T, typename F>
Result<std::optional<T>> parse_record(const std::string& key, const std::optional<std::string>& text, F from_json) {
  if (!text) return std::optional<T>();
  try {
    return std::optional<T>(from_json(json::parse(*text)));
  } catch (const std::exception& e) {
    return Status::Corruption("CSI registry record " + key + " is unreadable: " + e.what());
  }
}

Result<std::optional<std::string>> parse_pointer(const std::string& key, const std::optional<std::string>& text,
                                                 const char* field) {
  if (!text) return std::optional<std::string>();
  try {
    return std::optional<std::string>(json::parse(*text).at(field).get<std::string>());
  } catch (const std::exception& e) {
    return Status::Corruption("CSI registry record " + key + " is unreadable: " + e.what());
  }
}

}  // namespace

std::string hex_encode(const std::string& s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string new_volume_id(const std::string& name) {
  std::string clean;
  for (unsigned char c : name) {
    if (clean.size() >= 24) break;  // socket paths under <state-dir>/volumes/<id>/ stay short
    if (std::isalnum(c)) {
      clean += static_cast<char>(std::tolower(c));
    } else if (!clean.empty() && clean.back() != '-') {
      clean += '-';
    }
  }
  while (!clean.empty() && clean.back() == '-') clean.pop_back();
  if (clean.empty()) clean = "vol";
  return clean + "-" + random_hex(8);
}

std::string new_engine_snapshot_name() { return "csi-" + random_hex(16); }

bool plausible_volume_id(const std::string& id) {
  if (id.empty() || id.size() > 64 || id[0] == '-' || id[0] == '_') return false;
  return std::all_of(id.begin(), id.end(),
                     [](unsigned char c) { return std::isdigit(c) || (c >= 'a' && c <= 'z') || c == '-'; });
}

bool split_snapshot_id(const std::string& id, std::string* volume_id, std::string* engine_name) {
  const size_t at = id.find('@');
  if (at == std::string::npos) return false;
  *volume_id = id.substr(0, at);
  *engine_name = id.substr(at + 1);
  return plausible_volume_id(*volume_id) && !engine_name->empty() && engine_name->size() <= 128 &&
         engine_name->find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
}

Result<std::optional<std::string>> Registry::get_text(const std::string& key) {
  std::vector<std::byte> raw;
  Status st = store_->get(key, &raw);
  if (st.code() == Status::Code::kNotFound) return std::optional<std::string>();
  if (!st.ok()) return st.With("read CSI registry record " + key);
  return std::optional<std::string>(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
}

Status Registry::put_text(const std::string& key, const std::string& text) {
  return store_->put(key, std::as_bytes(std::span(text.data(), text.size()))).With("write CSI registry record " + key);
}

Result<std::optional<std::string>> Registry::volume_id_by_name(const std::string& name) {
  const std::string key = kNames + hex_encode(name) + ".json";
  CSI_ASSIGN_OR_RETURN(auto text, get_text(key));
  return parse_pointer(key, text, "volume_id");
}

Result<std::optional<VolumeRecord>> Registry::volume(const std::string& id) {
  const std::string key = kVolumes + id + ".json";
  CSI_ASSIGN_OR_RETURN(auto text, get_text(key));
  return parse_record<VolumeRecord>(key, text, volume_from_json);
}

Result<std::vector<VolumeRecord>> Registry::volumes() {
  std::vector<ObjectInfo> objs;
  PBD_RETURN_IF_ERROR(store_->list(kVolumes, &objs).With("list CSI volumes"));
  std::vector<VolumeRecord> out;
  for (const auto& o : objs) {
    CSI_ASSIGN_OR_RETURN(auto text, get_text(o.key));
    CSI_ASSIGN_OR_RETURN(auto rec, (parse_record<VolumeRecord>(o.key, text, volume_from_json)));
    if (rec) out.push_back(std::move(*rec));  // removed since the listing: gone
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Status Registry::put_volume(const VolumeRecord& v) { return put_text(kVolumes + v.id + ".json", to_json(v).dump(2)); }

Status Registry::put_volume_name(const std::string& name, const std::string& id) {
  return put_text(kNames + hex_encode(name) + ".json", json{{"volume_id", id}, {"name", name}}.dump());
}

Status Registry::remove_volume_name(const std::string& name) {
  return store_->remove(kNames + hex_encode(name) + ".json");
}

Status Registry::remove_volume(const std::string& id) { return store_->remove(kVolumes + id + ".json"); }

Result<std::optional<std::string>> Registry::snapshot_id_by_name(const std::string& name) {
  const std::string key = kSnapNames + hex_encode(name) + ".json";
  CSI_ASSIGN_OR_RETURN(auto text, get_text(key));
  return parse_pointer(key, text, "snapshot_id");
}

Result<std::optional<SnapshotRecord>> Registry::snapshot(const std::string& id) {
  const std::string key = kSnapshots + id + ".json";
  CSI_ASSIGN_OR_RETURN(auto text, get_text(key));
  return parse_record<SnapshotRecord>(key, text, snapshot_from_json);
}

Result<std::vector<SnapshotRecord>> Registry::snapshots() {
  std::vector<ObjectInfo> objs;
  PBD_RETURN_IF_ERROR(store_->list(kSnapshots, &objs).With("list CSI snapshots"));
  std::vector<SnapshotRecord> out;
  for (const auto& o : objs) {
    CSI_ASSIGN_OR_RETURN(auto text, get_text(o.key));
    CSI_ASSIGN_OR_RETURN(auto rec, (parse_record<SnapshotRecord>(o.key, text, snapshot_from_json)));
    if (rec) out.push_back(std::move(*rec));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Status Registry::put_snapshot(const SnapshotRecord& s) {
  return put_text(kSnapshots + s.id + ".json", to_json(s).dump(2));
}

Status Registry::put_snapshot_name(const std::string& name, const std::string& id) {
  return put_text(kSnapNames + hex_encode(name) + ".json", json{{"snapshot_id", id}, {"name", name}}.dump());
}

Status Registry::remove_snapshot_name(const std::string& name) {
  return store_->remove(kSnapNames + hex_encode(name) + ".json");
}

Status Registry::remove_snapshot(const std::string& id) { return store_->remove(kSnapshots + id + ".json"); }

}  // namespace portalbd::csi
