// `portalctl status`.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ctl/portalctl_commands.h"
#include "ctl/status_view.h"

namespace portalbd::ctl {

void add_status_command(CLI::App* app, DaemonCommand* chosen) {
  CLI::App* sub = app->add_subcommand("status", "show the volume, its storage, connected clients and counters");
  sub->callback([chosen] {
    chosen->cmd = "status";
    chosen->render = render_status;
  });
}

}  // namespace portalbd::ctl
