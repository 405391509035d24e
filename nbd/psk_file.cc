#include "nbd/psk_file.h"

#include <fstream>
#include <sstream>

namespace portalbd::nbd {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<PskTable> parse_psk_file(const std::string& text) {
  PskTable table;
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](const std::string& why) {
      return Status::InvalidArgument("line " + std::to_string(number) + ": " + why);
    };
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return bad("expected identity:hexkey");
    const std::string identity = line.substr(0, colon);
    const std::string hex = line.substr(colon + 1);
    if (identity.empty()) return bad("empty identity");
    if (hex.empty() || hex.size() % 2 != 0) return bad("the key must be an even number of hex digits");
    if (hex.size() / 2 > kMaxPskBytes) return bad("the key is longer than 512 bytes");
    std::vector<unsigned char> key(hex.size() / 2);
    for (size_t i = 0; i < key.size(); ++i) {
      const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) return bad("the key has a character that is not a hex digit");
      key[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    if (!table.emplace(identity, std::move(key)).second) return bad("identity '" + identity + "' appears twice");
  }
  if (table.empty()) return Status::InvalidArgument("no keys (expected identity:hexkey lines)");
  return table;
}

Result<PskTable> load_psk_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read PSK file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  auto table = parse_psk_file(text.str());
  if (!table.ok()) return table.status().With("PSK file " + path);
  return table;
}

}  // namespace portalbd::nbd
