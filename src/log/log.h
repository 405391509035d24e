// Logging: one line per event, like the seed:
//   2026-01-07T02:58:02.656116Z  INFO portalbd::nbd: NBD server listening address=127.0.0.1:10809
// RFC 3339 UTC timestamp, level, component, message with key=value fields.
// Under systemd (JOURNAL_STREAM set) the timestamp is left out: the journal
// has its own.
//
// Include only from .cc files: spdlog is a heavy header.
// Thread-safety: loggers are thread-safe (spdlog *_mt sinks).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace portalbd::log {

// Configures every logger. `level`: trace|debug|info|warn|error|off.
// Returns false (and leaves the level unchanged) for an unknown level name.
bool init(const std::string& level);

// The logger for one component ("nbd", "engine", "store", "daemon" ...);
// created on first use, named "portalbd::<component>" in output.
std::shared_ptr<spdlog::logger> get(const std::string& component);

// Quotes a value for key=value output when it has spaces or quotes:
// storage="file:///var/lib/portalbd/data".
std::string quote(const std::string& value);

}  // namespace portalbd::log
