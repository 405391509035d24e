#include "src/store/s3/aws_ini.h"

#include <fstream>
#include <sstream>

namespace portalbd::s3 {

std::string trim_blanks(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::optional<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool scan_profile(const std::string& text, const std::string& profile, const IniScan& scan,
                  const std::function<void(const std::string& key, const std::string& value)>& on_key) {
  std::istringstream in(text);
  std::string line;
  bool in_profile = false, seen_profile = false;
  while (std::getline(in, line)) {
    std::string t = trim_blanks(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      in_profile = scan.profile_of(trim_blanks(t.substr(1, t.size() - 2))) == profile;
      seen_profile = seen_profile || in_profile;
      continue;
    }
    if (!in_profile) continue;
    if (scan.skip_indented && (line[0] == ' ' || line[0] == '\t')) continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    on_key(trim_blanks(t.substr(0, eq)), trim_blanks(t.substr(eq + 1)));
  }
  return seen_profile;
}

}  // namespace portalbd::s3
