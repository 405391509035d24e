// The table of configuration file keys: name, type, the Config field it sets,
// its rule and a one-line help. The TOML loader, validate_config() and the
// --help text all walk this one table, so a key added here is loaded,
// checked and documented at once.
//
// Internal to src/config. Thread-safety: the table is immutable.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "src/config/config.h"

namespace portalbd {

struct ConfigKey {
  enum class Type { kUint, kBool, kString };

  const char* name;  // "table.key", as written in the file
  Type type;
  uint64_t Config::*uint_field = nullptr;
  bool Config::*bool_field = nullptr;
  std::string Config::*string_field = nullptr;
  Status (*check_uint)(uint64_t) = nullptr;
  Status (*check_string)(const std::string&) = nullptr;
  bool Config::*set_marker = nullptr;  // set to true when the key is present (disk_size_set)
  const char* help = "";
};

std::span<const ConfigKey> config_keys();

// The key named `name` ("lsm.flush_interval_ms"), or nullptr.
const ConfigKey* find_config_key(const std::string& name);

// The known name closest to `name` when it is a likely typo, else "".
std::string suggest_config_key(const std::string& name);

// The value of `key` in `cfg` as it would be written in TOML: 10, true, "x".
std::string config_value_text(const ConfigKey& key, const Config& cfg);

// A string as a TOML basic string: "a\"b".
std::string quote_config_string(const std::string& s);

// Runs the key's rule on its value in `cfg`.
Status check_config_key(const ConfigKey& key, const Config& cfg);

}  // namespace portalbd
