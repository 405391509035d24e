// portalctl: the command-line client of a running portalbd. Parses the
// command line (CLI11), sends one request on the control socket, prints the
// answer for people (or as JSON with --json) and returns the exit status
// listed in ctl/exit_codes.h.
//
// Entry point: ctl/portalctl_main.cc. Split out so tests can run the whole
// program in-process against a ControlServer.
//
// Thread-safety: no shared state; one call at a time per stream pair.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace portalbd::ctl {

// What portalctl reads from the process, kept apart for tests.
struct PortalctlEnvironment {
  std::string default_socket;  // the daemon's default control socket for this user
  std::string socket_env;      // $PORTALBD_SOCKET, "" when unset

  static PortalctlEnvironment current();
};

// `args` excludes the program name. Output goes to `out`; errors, one line
// "portalctl: <message>", to `err`. Returns the exit status.
int run_portalctl(const std::vector<std::string>& args, const PortalctlEnvironment& env, std::ostream& out,
                  std::ostream& err);

}  // namespace portalbd::ctl
