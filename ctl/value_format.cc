#include "ctl/value_format.h"

#include <nlohmann/json.hpp>

#include "ctl/human_format.h"

namespace portalbd::ctl {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string format_number(const std::string& key, const nlohmann::json& v) {
  if (v.is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g", v.get<double>());
    return buf;
  }
  if (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0) {
    if (ends_with(key, "_at")) return format_unix_time(v.get<int64_t>());
    return std::to_string(v.get<int64_t>());
  }
  const uint64_t n = v.get<uint64_t>();
  if (ends_with(key, "_bytes") || key == "bytes" || key.rfind("bytes_", 0) == 0) return format_bytes_exact(n);
  if (ends_with(key, "_unix_ms")) return format_unix_time(static_cast<int64_t>(n / 1000));
  if (ends_with(key, "_s")) return format_duration_s(n);
  if (ends_with(key, "_ms")) return format_count(n) + " ms";
  if (ends_with(key, "_at")) return format_unix_time(static_cast<int64_t>(n));
  return format_count(n);
}

}  // namespace

std::string label_for_key(const std::string& key) {
  std::string label = key;
  // "_bytes" stays: "read bytes" next to "reads" says what is counted.
  for (const char* suffix : {"_unix_ms", "_ms", "_s", "_at"}) {
    if (ends_with(label, suffix)) {
      label.resize(label.size() - std::char_traits<char>::length(suffix));
      break;
    }
  }
  for (char& c : label) {
    if (c == '_') c = ' ';
  }
  return label;
}

std::string format_value(const std::string& key, const nlohmann::json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return s.empty() ? "-" : s;
  }
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number()) return format_number(key, v);
  if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& e) { return e.is_primitive(); })) {
    if (v.empty()) return "-";
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ", ") + format_value("", e);
    return out;
  }
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace portalbd::ctl
