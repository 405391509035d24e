// apply_config_file(): reads a TOML file and applies each key through the
// table in config_keys.h. Every problem is reported with the file name first
// so that a daemon that refuses to start says exactly what to edit.
#include <toml++/toml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <sstream>

#include "src/config/config.h"
#include "src/config/config_keys.h"

namespace portalbd {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

Result<std::string> read_whole_file(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return Status::IOError("cannot read config file " + path + ": " + std::strerror(errno));
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) text.append(buf, n);
  if (std::ferror(f.get())) return Status::IOError("cannot read config file " + path + ": " + std::strerror(errno));
  return text;
}

// The value as the user wrote it, strings always in double quotes (toml++
// prints them single-quoted, which reads oddly next to our other messages).
std::string node_text(const toml::node& node) {
  if (const auto* s = node.as_string()) return quote_config_string(s->get());
  std::ostringstream out;
  node.visit([&](const auto& v) { out << v; });
  return out.str();
}

const char* toml_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date/time";
    default: return "an unknown type";
  }
}

const char* expected_type_name(ConfigKey::Type type) {
  switch (type) {
    case ConfigKey::Type::kUint: return "a non-negative integer";
    case ConfigKey::Type::kBool: return "true or false";
    case ConfigKey::Type::kString: return "a string";
  }
  return "";
}

// Sets one key from its TOML node. The returned message omits the file name
// and key, which the caller adds.
Status apply_value(const ConfigKey& key, const toml::node& node, Config* cfg) {
  auto wrong_type = [&] {
    return Status::InvalidArgument(std::string("expected ") + expected_type_name(key.type) + ", got " +
                                   toml_type_name(node));
  };
  switch (key.type) {
    case ConfigKey::Type::kUint: {
      const auto* v = node.as_integer();
      if (v == nullptr) return wrong_type();
      if (v->get() < 0) return Status::InvalidArgument("must not be negative");
      cfg->*key.uint_field = static_cast<uint64_t>(v->get());
      break;
    }
    case ConfigKey::Type::kBool: {
      const auto* v = node.as_boolean();
      if (v == nullptr) return wrong_type();
      cfg->*key.bool_field = v->get();
      break;
    }
    case ConfigKey::Type::kString: {
      const auto* v = node.as_string();
      if (v == nullptr) return wrong_type();
      cfg->*key.string_field = v->get();
      break;
    }
  }
  if (key.set_marker != nullptr) cfg->*key.set_marker = true;
  return check_config_key(key, *cfg);
}

std::set<std::string> known_tables() {
  std::set<std::string> tables;
  for (const ConfigKey& k : config_keys()) {
    std::string name = k.name;
    tables.insert(name.substr(0, name.find('.')));
  }
  return tables;
}

Status unknown_key(const std::string& path, const std::string& name) {
  std::string msg = path + ": unknown key '" + name + "'";
  std::string hint = suggest_config_key(name);
  if (!hint.empty()) msg += " (did you mean '" + hint + "'?)";
  return Status::InvalidArgument(msg);
}

Status apply_table(const std::string& path, const toml::table& root, Config* cfg) {
  const std::set<std::string> tables = known_tables();
  for (const auto& [table_key, table_node] : root) {
    const std::string table_name(table_key.str());
    const toml::table* table = table_node.as_table();
    if (table == nullptr) {
      // Every key lives in a table; a bare "disk_size_gb = 1" is a misplaced key.
      return unknown_key(path, table_name);
    }
    if (tables.count(table_name) == 0) {
      std::string msg = path + ": unknown table '[" + table_name + "]' (known: ";
      bool first = true;
      for (const auto& t : tables) {
        msg += (first ? "[" : ", [") + t + "]";
        first = false;
      }
      return Status::InvalidArgument(msg + ")");
    }
    for (const auto& [key, node] : *table) {
      const std::string name = table_name + "." + std::string(key.str());
      const ConfigKey* known = find_config_key(name);
      if (known == nullptr) return unknown_key(path, name);
      Status st = apply_value(*known, node, cfg);
      if (!st.ok()) return st.With(path + ": " + name + " = " + node_text(node));
    }
  }
  return Status::OK();
}

}  // namespace

Status apply_config_file(const std::string& path, Config* cfg) {
  auto text = read_whole_file(path);
  if (!text.ok()) return text.status();
  toml::table root;
  try {
    root = toml::parse(*text, path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status::InvalidArgument(path + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) +
                                   ": TOML syntax error: " + std::string(e.description()));
  }
  PBD_RETURN_IF_ERROR(apply_table(path, root, cfg));
  cfg->config_file = path;
  return Status::OK();
}

}  // namespace portalbd
