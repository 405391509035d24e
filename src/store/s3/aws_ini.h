// The INI dialect of the AWS shared files (~/.aws/credentials, ~/.aws/config),
// shared by credentials_file.cc and aws_config_file.cc: "[section]" headers,
// "key = value" lines, '#' and ';' comments, surrounding blanks ignored.
//
// Pure functions; thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "src/util/status.h"

namespace portalbd::s3 {

// The whole file at `path`; nullopt when it cannot be read.
std::optional<std::string> read_text_file(const std::string& path);

struct IniScan {
  // The profile a section header (without brackets) names, "" for none.
  std::function<std::string(const std::string& header)> profile_of;
  // Skip indented lines (the config file's nested blocks, e.g. "s3 =").
  bool skip_indented = false;
};

// Calls on_key(key, value) for each top-level "key = value" line in the
// sections naming `profile`. Returns whether such a section was seen.
bool scan_profile(const std::string& text, const std::string& profile, const IniScan& scan,
                  const std::function<void(const std::string& key, const std::string& value)>& on_key);

// `s` without leading and trailing blanks.
std::string trim_blanks(const std::string& s);

}  // namespace portalbd::s3
