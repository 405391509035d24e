// portalctl's subcommands. Each add_*() function declares its CLI11
// subcommand(s); when the user picks one, its callback fills *chosen with the
// daemon command to send, its arguments and how to print the result. Adding a
// command means adding one such function; run_portalctl() does the rest.
//
// Internal to ctl/. Thread-safety: used during one parse on one thread.
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace portalbd::ctl {

struct DaemonCommand {
  std::string cmd;                                      // the control protocol command, e.g. "snapshot.create"
  std::function<void(nlohmann::json* args)> fill_args;  // null: no arguments
  std::function<void(const nlohmann::json& result, std::ostream& out)> render;
  // Set by commands that run locally instead (mount, umount): gets the control
  // socket and returns the exit status.
  std::function<int(const std::string& socket, std::ostream& out, std::ostream& err)> run_local;
};

void add_status_command(CLI::App* app, DaemonCommand* chosen);
void add_snapshot_commands(CLI::App* app, DaemonCommand* chosen);
void add_mount_commands(CLI::App* app, DaemonCommand* chosen);  // ctl/portalctl_mount.cc
void add_gc_commands(CLI::App* app, DaemonCommand* chosen);     // ctl/portalctl_gc.cc

}  // namespace portalbd::ctl
