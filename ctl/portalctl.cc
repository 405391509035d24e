// run_portalctl(): global options, parse, one call(), print, exit status.
#include "ctl/portalctl.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "ctl/control_client.h"
#include "ctl/exit_codes.h"
#include "ctl/portalctl_commands.h"
#include "src/config/config.h"
#include "src/config/version.h"
#include "src/util/spelling.h"

namespace portalbd::ctl {
namespace {

// How long the daemon may stay silent. It sends a progress line at least
// every second while a command runs, so this bounds a stuck daemon, not a
// long command: `gc --wait` or a snapshot that must first upload a full write
// buffer to slow storage get their answer however long they take.
constexpr unsigned kDefaultTimeoutS = 120;

// Every command's --help ends with the exit codes, once: subcommands may
// have inherited the parent's footer already when they were added.
void add_exit_codes_footer(CLI::App* app) {
  for (CLI::App* sub : app->get_subcommands({})) {
    const std::string footer = sub->get_footer();
    if (footer.find(exit_codes_help()) == std::string::npos) {
      sub->footer(footer.empty() ? exit_codes_help() : footer + "\n\n" + exit_codes_help());
    }
    add_exit_codes_footer(sub);
  }
}

// When `args` name a command that does not exist at some level ("stauts",
// "snapshot craete"), the message that says so, with the closest command
// when one is close; "" otherwise (CLI11's own message then stands).
std::string unknown_command_message(const CLI::App& app, const std::vector<std::string>& args) {
  const CLI::App* level = &app;
  std::string path;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.empty() || arg[0] == '-') {
      // Options of the levels we walked; those taking a value skip it.
      const std::string name = arg.substr(0, arg.find('='));
      const CLI::Option* opt = nullptr;
      for (const CLI::App* a = level; a != nullptr && opt == nullptr; a = a->get_parent()) {
        opt = a->get_option_no_throw(name);
      }
      if (opt != nullptr && opt->get_expected_min() > 0 && arg.find('=') == std::string::npos) ++i;
      continue;
    }
    const auto subs = level->get_subcommands({});
    if (subs.empty()) return "";  // a positional argument of a command
    const CLI::App* next = nullptr;
    for (const CLI::App* sub : subs) {
      if (sub->check_name(arg)) next = sub;
    }
    if (next == nullptr) {
      std::vector<std::string> names;
      std::string known;
      for (const CLI::App* sub : subs) {
        names.push_back(sub->get_name());
        known += (known.empty() ? "" : ", ") + sub->get_name();
      }
      const std::string best = closest_name(arg, names);
      std::string message = "unknown command '" + path + arg + "'";
      message += best.empty() ? " (commands: " + known + ")" : "; did you mean '" + path + best + "'?";
      return message;
    }
    path += next->get_name() + " ";
    level = next;
  }
  return "";
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
    const std::string unknown = unknown_command_message(app, args);
    return usage_error(err, unknown.empty() ? e.what() : unknown);
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
