#include "src/store/s3/credentials_file.h"

#include "src/store/s3/aws_ini.h"

namespace portalbd::s3 {

Result<Credentials> parse_credentials_ini(const std::string& text, const std::string& profile,
                                          const std::string& source_name) {
  Credentials creds;
  // ~/.aws/config spells sections "[profile x]"; accept that too.
  auto profile_of = [](const std::string& header) {
    return header.rfind("profile ", 0) == 0 ? trim_blanks(header.substr(8)) : header;
  };
  const bool seen = scan_profile(text, profile, {profile_of, /*skip_indented=*/false},
                                 [&](const std::string& key, const std::string& value) {
                                   if (key == "aws_access_key_id")
                                     creds.access_key_id = value;
                                   else if (key == "aws_secret_access_key")
                                     creds.secret_access_key = value;
                                   else if (key == "aws_session_token")
                                     creds.session_token = value;
                                 });
  if (!seen) return Status::NotFound("profile [" + profile + "] not found in " + source_name);
  if (creds.access_key_id.empty() || creds.secret_access_key.empty()) {
    return Status::InvalidArgument("profile [" + profile + "] in " + source_name +
                                   " lacks aws_access_key_id or aws_secret_access_key");
  }
  return creds;
}

Result<Credentials> load_credentials_file(const std::string& path, const std::string& profile) {
  auto text = read_text_file(path);
  if (!text) return Status::NotFound("credentials file " + path + " not readable");
  return parse_credentials_ini(*text, profile, path);
}

}  // namespace portalbd::s3
