#include "src/log/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>

#include "src/util/mutex.h"

namespace portalbd::log {
namespace {

Mutex g_mu;
spdlog::level::level_enum g_level GUARDED_BY(g_mu) = spdlog::level::info;

// Prints the level as the seed does: right-aligned, upper case ("  INFO").
class LevelFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static const char* kNames[] = {"TRACE", "DEBUG", " INFO", " WARN", "ERROR", "ERROR", "  OFF"};
    const char* name = kNames[static_cast<int>(msg.level)];
    dest.append(name, name + 5);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<LevelFlag>(); }
};

std::unique_ptr<spdlog::formatter> make_formatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  f->add_flag<LevelFlag>('*');
  // The journal stamps each line itself; a second timestamp only adds noise.
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    f->set_pattern("%* %n: %v");
  } else {
    f->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %* %n: %v");
  }
  return f;
}

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = [] {
    auto s = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    s->set_formatter(make_formatter());
    return s;
  }();
  return sink;
}

}  // namespace

bool init(const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") return false;
  MutexLock lock(&g_mu);
  g_level = lvl;
  spdlog::apply_all([lvl](const std::shared_ptr<spdlog::logger>& l) { l->set_level(lvl); });
  return true;
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  std::string name = component == "portalbd" ? component : "portalbd::" + component;
  MutexLock lock(&g_mu);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = std::make_shared<spdlog::logger>(name, shared_sink());
  logger->set_level(g_level);
  logger->flush_on(spdlog::level::trace);
  spdlog::register_logger(logger);
  return logger;
}

std::string quote(const std::string& value) {
  if (!value.empty() && value.find_first_of(" \"=\t") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace portalbd::log
