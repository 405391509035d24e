// Reads the AWS shared credentials file (~/.aws/credentials), an INI file:
//
//   [default]
//   aws_access_key_id = AKID...
//   aws_secret_access_key = ...
//   aws_session_token = ...        (optional)
//
// Pure functions; thread-safe. Errors never include a secret.
#pragma once

#include <string>

#include "src/store/s3/sigv4.h"
#include "src/util/status.h"

namespace portalbd::s3 {

// Parses INI text; kNotFound when `profile` has no section or no keys.
Result<Credentials> parse_credentials_ini(const std::string& text, const std::string& profile,
                                          const std::string& source_name);
// Reads and parses `path`; kNotFound when the file does not exist.
Result<Credentials> load_credentials_file(const std::string& path, const std::string& profile);

}  // namespace portalbd::s3
