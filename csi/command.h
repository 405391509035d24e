// Running the host's tools (nbd-client, mkfs, mount, resize2fs ...) from the
// node service: argv only, never a shell, with the output captured for the
// error message.
// Thread-safety: each call forks its own child; safe from any thread.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "src/util/status.h"

namespace portalbd::csi {

struct CommandResult {
  int exit_code = -1;  // -1: could not run, or killed by a signal
  std::string output;  // stdout and stderr together, at most 64 KiB
};

// Runs argv[0] (looked up in PATH) with argv, waits for it.
CommandResult run_command(const std::vector<std::string>& argv);
// run_command, OK only on exit status 0; otherwise kIOError with the
// command line and the last lines of its output.
Status run_checked(const std::vector<std::string>& argv);

// Starts argv in its own session (it outlives this process), stdout and
// stderr appended to `log_path`, with this process's environment plus
// `env` (which wins); returns its pid.
Result<int> spawn_detached(const std::vector<std::string>& argv, const std::string& log_path,
                           const std::map<std::string, std::string>& env = {});

// True when `path` is a mount point (listed in /proc/self/mountinfo).
bool is_mount_point(const std::string& path);

}  // namespace portalbd::csi
