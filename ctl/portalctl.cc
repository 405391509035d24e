// run_portalctl(): global options, parse, one call(), print, exit status.
#include "ctl/portalctl.h"

#include <cstdlib>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ctl/control_client.h"
#include "ctl/exit_codes.h"
#include "ctl/portalctl_commands.h"
#include "src/config/config.h"
#include "src/config/version.h"

namespace portalbd::ctl {
namespace {

// How long the daemon may stay silent. It sends a progress line at least
// every second while a command runs, so this bounds a stuck daemon, not a
// long command: `gc --wait` or a snapshot that must first upload a full write
// buffer to slow storage get their answer however long they take.
constexpr unsigned kDefaultTimeoutS = 120;

// Every command's --help ends with the exit codes, not only the top level's.
void add_exit_codes_footer(CLI::App* app) {
  for (CLI::App* sub : app->get_subcommands({})) {
    const std::string footer = sub->get_footer();
    sub->footer(footer.empty() ? exit_codes_help() : footer + "\n\n" + exit_codes_help());
    add_exit_codes_footer(sub);
  }
}

int usage_error(std::ostream& err, const std::string& message) {
  err << "portalctl: " << message << " (see portalctl --help)\n";
  return kExitUsage;
}

}  // namespace

PortalctlEnvironment PortalctlEnvironment::current() {
  PortalctlEnvironment env;
  env.default_socket = default_config().control_socket;
  if (const char* s = std::getenv("PORTALBD_SOCKET")) env.socket_env = s;
  return env;
}

int run_portalctl(const std::vector<std::string>& args, const PortalctlEnvironment& env, std::ostream& out,
                  std::ostream& err) {
  CLI::App app("portalctl " + std::string(kVersion) + ": controls a running portalbd over its control socket.",
               "portalctl");
  app.set_version_flag("--version", "portalctl " + std::string(kVersion), "print the version and exit");
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand: `portalctl status --json`
  app.footer(exit_codes_help());

  std::string socket;
  const std::string socket_default = env.socket_env.empty() ? env.default_socket : env.socket_env;
  app.add_option("--socket", socket, "control socket of the daemon (env PORTALBD_SOCKET)")
      ->option_text("PATH [" + socket_default + "]");
  bool as_json = false;
  app.add_flag("--json", as_json, "print the daemon's result as one JSON object");
  unsigned timeout_s = kDefaultTimeoutS;
  app.add_option("--timeout", timeout_s,
                 "seconds to wait for word from the daemon (it reports at least every second while a command "
                 "runs), 0 waits forever")
      ->option_text("SECONDS [" + std::to_string(kDefaultTimeoutS) + "]");

  DaemonCommand chosen;
  add_status_command(&app, &chosen);
  add_snapshot_commands(&app, &chosen);
  add_mount_commands(&app, &chosen);
  add_gc_commands(&app, &chosen);
  add_exit_codes_footer(&app);

  std::vector<const char*> argv{"portalctl"};
  for (const auto& a : args) argv.push_back(a.c_str());
  if (args.empty()) {
    err << app.help();
    return kExitUsage;
  }
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::CallForVersion& v) {
    out << v.what() << "\n";
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    return usage_error(err, e.what());
  }
  if (chosen.cmd.empty()) return usage_error(err, "no command given");

  if (socket.empty()) socket = socket_default;
  if (chosen.run_local) return chosen.run_local(socket, out, err);
  nlohmann::json call_args = nlohmann::json::object();
  if (chosen.fill_args) chosen.fill_args(&call_args);

  CallFailure failure = CallFailure::kNone;
  const int timeout_ms = timeout_s == 0 ? 0 : static_cast<int>(std::min(timeout_s, 2'000'000u) * 1000);
  // Progress lines keep a long command's connection alive; in text mode
  // their messages are printed as they come, with --json only the answer.
  ProgressCallback on_progress = [&](const nlohmann::json& progress) {
    if (as_json || !progress.is_object()) return;
    auto message = progress.find("message");
    if (message != progress.end() && message->is_string()) out << message->get<std::string>() << std::endl;
  };
  auto result = call(socket, chosen.cmd, call_args, timeout_ms, &failure, on_progress);
  if (!result.ok()) {
    err << "portalctl: " << result.status().message() << "\n";
    return exit_code_for(result.status(), failure);
  }
  if (as_json) {
    out << result->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    chosen.render(*result, out);
  }
  return kExitOk;
}

}  // namespace portalbd::ctl
