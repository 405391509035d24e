#include "src/store/s3/aws_config_file.h"

#include <fstream>
#include <sstream>

namespace portalbd::s3 {

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// The profile a section header names, or "" when it names none (e.g. "[sso-session x]").
std::string profile_of_section(const std::string& header) {
  if (header == "default") return header;
  if (header.rfind("profile ", 0) == 0) return trim(header.substr(8));
  return {};
}

}  // namespace

Result<AwsProfileSettings> parse_aws_config_ini(const std::string& text, const std::string& profile,
                                                const std::string& source_name) {
  std::istringstream in(text);
  std::string line;
  bool in_profile = false, seen_profile = false;
  AwsProfileSettings settings;
  while (std::getline(in, line)) {
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      in_profile = profile_of_section(trim(t.substr(1, t.size() - 2))) == profile;
      seen_profile = seen_profile || in_profile;
      continue;
    }
    // An indented line continues a nested block such as "s3 =": not ours.
    if (!in_profile || line[0] == ' ' || line[0] == '\t') continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(t.substr(0, eq));
    std::string value = trim(t.substr(eq + 1));
    if (key == "region") settings.region = value;
    else if (key == "endpoint_url") settings.endpoint_url = value;
  }
  if (!seen_profile) return Status::NotFound("profile [" + profile + "] not found in " + source_name);
  return settings;
}

Result<AwsProfileSettings> load_aws_config_file(const std::string& path, const std::string& profile) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("AWS config file " + path + " not readable");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_aws_config_ini(ss.str(), profile, path);
}

}  // namespace portalbd::s3
