// The daemon's command line: `portalbd [-c FILE] [--disk-size-gb N] ...`,
// parsed with CLI11 into a validated Config.
//
// Precedence: defaults (default_config) <- config file (-c FILE, else
// $PORTALBD_CONFIG) <- flags. A flag's value is checked by the same rule as
// the file key it overrides; the result passes validate_config().
//
// Ownership: values. Thread-safety: no shared state; call from one thread.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace portalbd {

struct CliOutcome {
  // -1: run the daemon with `config`. >= 0: exit now with this code: 0 after
  // --help or --version, 2 after a usage or configuration error (one line
  // "portalbd: <problem>" already written to the error stream).
  int exit_code = -1;
  Config config;
};

// What the parse reads from the process, kept apart for tests.
struct DaemonCliEnvironment {
  UserEnvironment user;
  std::string portalbd_config;  // $PORTALBD_CONFIG, "" when unset

  static DaemonCliEnvironment current();
};

// `args` excludes the program name. Help and version go to `out`, errors to `err`.
CliOutcome parse_daemon_command_line(const std::vector<std::string>& args, const std::string& version,
                                     const DaemonCliEnvironment& env, std::ostream& out, std::ostream& err);

// The real process: argv, the environment, std::cout and std::cerr.
CliOutcome parse_daemon_command_line(int argc, char** argv, const std::string& version);

}  // namespace portalbd
