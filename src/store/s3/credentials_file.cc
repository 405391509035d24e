#include "src/store/s3/credentials_file.h"

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

}  // namespace

Result<Credentials> parse_credentials_ini(const std::string& text, const std::string& profile,
                                          const std::string& source_name) {
  std::istringstream in(text);
  std::string line;
  bool in_profile = false, seen_profile = false;
  Credentials creds;
  while (std::getline(in, line)) {
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      std::string name = trim(t.substr(1, t.size() - 2));
      // ~/.aws/config spells sections "[profile x]"; accept that too.
      if (name.rfind("profile ", 0) == 0) name = trim(name.substr(8));
      in_profile = name == profile;
      seen_profile = seen_profile || in_profile;
      continue;
    }
    if (!in_profile) continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(t.substr(0, eq));
    std::string value = trim(t.substr(eq + 1));
    if (key == "aws_access_key_id") creds.access_key_id = value;
    else if (key == "aws_secret_access_key") creds.secret_access_key = value;
    else if (key == "aws_session_token") creds.session_token = value;
  }
  if (!seen_profile) return Status::NotFound("profile [" + profile + "] not found in " + source_name);
  if (creds.access_key_id.empty() || creds.secret_access_key.empty()) {
    return Status::InvalidArgument("profile [" + profile + "] in " + source_name +
                                   " lacks aws_access_key_id or aws_secret_access_key");
  }
  return creds;
}

Result<Credentials> load_credentials_file(const std::string& path, const std::string& profile) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("credentials file " + path + " not readable");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_credentials_ini(ss.str(), profile, path);
}

}  // namespace portalbd::s3
