// Reads the settings portalbd takes from the AWS shared config file
// (~/.aws/config, or AWS_CONFIG_FILE), an INI file whose sections are
// "[default]" and "[profile NAME]":
//
//   [default]
//   region = eu-west-1
//
//   [profile minio]
//   region = us-east-1
//   endpoint_url = http://127.0.0.1:9000
//
// Only top-level keys of the profile's section count: indented lines belong to
// a nested block ("s3 =" followed by indented keys) and are skipped, and a
// bare "[NAME]" section (the credentials file's spelling) is not a profile
// here, as the AWS CLI also ignores it.
//
// Pure functions; thread-safe. The file may hold secrets; errors never quote values.
#pragma once

#include <string>

#include "src/util/status.h"

namespace portalbd::s3 {

struct AwsProfileSettings {
  std::string region;        // "" = not set in the profile
  std::string endpoint_url;  // "" = not set in the profile
};

// Parses INI text; kNotFound when `profile` has no section.
Result<AwsProfileSettings> parse_aws_config_ini(const std::string& text, const std::string& profile,
                                                const std::string& source_name);
// Reads and parses `path`; kNotFound when the file is missing or has no such profile.
Result<AwsProfileSettings> load_aws_config_file(const std::string& path, const std::string& profile);

}  // namespace portalbd::s3
