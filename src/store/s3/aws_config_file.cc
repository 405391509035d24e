#include "src/store/s3/aws_config_file.h"

#include "src/store/s3/aws_ini.h"

namespace portalbd::s3 {

namespace {

// The profile a section header names, or "" when it names none (e.g. "[sso-session x]").
std::string profile_of_section(const std::string& header) {
  if (header == "default") return header;
  if (header.rfind("profile ", 0) == 0) return trim_blanks(header.substr(8));
  return {};
}

}  // namespace

Result<AwsProfileSettings> parse_aws_config_ini(const std::string& text, const std::string& profile,
                                                const std::string& source_name) {
  AwsProfileSettings settings;
  // An indented line continues a nested block such as "s3 =": not ours.
  const bool seen = scan_profile(text, profile, {profile_of_section, /*skip_indented=*/true},
                                 [&](const std::string& key, const std::string& value) {
                                   if (key == "region")
                                     settings.region = value;
                                   else if (key == "endpoint_url")
                                     settings.endpoint_url = value;
                                 });
  if (!seen) return Status::NotFound("profile [" + profile + "] not found in " + source_name);
  return settings;
}

Result<AwsProfileSettings> load_aws_config_file(const std::string& path, const std::string& profile) {
  auto text = read_text_file(path);
  if (!text) return Status::NotFound("AWS config file " + path + " not readable");
  return parse_aws_config_ini(*text, profile, path);
}

}  // namespace portalbd::s3
