// `portalctl snapshot create|list|show|delete|restore|prune`: thin mappings
// onto the daemon's snapshot.* commands (docs/control-protocol.md). The daemon checks
// names and does the work; portalctl only checks what it parses itself.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "ctl/portalctl_commands.h"
#include "ctl/snapshot_view.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;
using Render = void (*)(const json&, std::ostream&);

// A subcommand taking one snapshot NAME and sending it as {"name": NAME}.
void add_named(CLI::App* snapshot, DaemonCommand* chosen, const char* name, const char* help, const char* cmd,
               Render render) {
  auto value = std::make_shared<std::string>();
  CLI::App* sub = snapshot->add_subcommand(name, help);
  sub->add_option("NAME", *value, "snapshot name")->required();
  sub->callback([chosen, value, cmd, render] {
    chosen->cmd = cmd;
    chosen->fill_args = [value](json* args) { (*args)["name"] = *value; };
    chosen->render = render;
  });
}

void add_create(CLI::App* snapshot, DaemonCommand* chosen) {
  auto name = std::make_shared<std::string>();
  CLI::App* sub = snapshot->add_subcommand(
      "create", "snapshot the volume now; it includes every write answered before the command");
  CLI::Option* given = sub->add_option("NAME", *name, "snapshot name (default: the daemon picks auto-<UTC time>)");
  sub->callback([chosen, name, given] {
    // `snapshot create ""` is a mistake (an unset shell variable), not a
    // request for an automatic name: only leaving NAME out asks for that.
    if (given->count() != 0 && name->empty()) {
      throw CLI::ValidationError("NAME", "snapshot name must not be empty (leave it out for auto-<UTC time>)");
    }
    chosen->cmd = "snapshot.create";
    chosen->fill_args = [name](json* args) {
      if (!name->empty()) (*args)["name"] = *name;
    };
    chosen->render = render_snapshot;
  });
}

void add_restore(CLI::App* snapshot, DaemonCommand* chosen) {
  struct Options {
    std::string name;
    bool discard_current = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* sub = snapshot->add_subcommand(
      "restore",
      "make the volume's contents those of a snapshot; the state it replaces is kept as an automatic snapshot. "
      "Unmount filesystems on clients first");
  sub->add_option("NAME", opts->name, "snapshot name")->required();
  sub->add_flag("--discard-current", opts->discard_current,
                "do not keep the replaced state as a snapshot (cannot be undone)");
  sub->callback([chosen, opts] {
    chosen->cmd = "snapshot.restore";
    chosen->fill_args = [opts](json* args) {
      (*args)["name"] = opts->name;
      if (opts->discard_current) (*args)["discard_current"] = true;
    };
    chosen->render = render_snapshot_restored;
  });
}

void add_prune(CLI::App* snapshot, DaemonCommand* chosen) {
  struct Options {
    uint64_t keep_last = 0, keep_hourly = 0, keep_daily = 0, keep_weekly = 0;
    std::string prefix;
    bool dry_run = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* sub =
      snapshot->add_subcommand("prune", "delete the snapshots that no keep rule retains (retention like restic/borg)");
  std::vector<CLI::Option*> rules = {
      sub->add_option("--keep-last", opts->keep_last, "keep the N newest snapshots")->option_text("N"),
      sub->add_option("--keep-hourly", opts->keep_hourly, "keep the newest snapshot of each of the last N hours")
          ->option_text("N"),
      sub->add_option("--keep-daily", opts->keep_daily, "keep the newest snapshot of each of the last N days")
          ->option_text("N"),
      sub->add_option("--keep-weekly", opts->keep_weekly, "keep the newest snapshot of each of the last N weeks")
          ->option_text("N"),
  };
  // Unsigned options would take "-1" as 2^64-1, i.e. "keep everything".
  const CLI::Validator non_negative(
      [](const std::string& value) -> std::string {
        return !value.empty() && value[0] == '-' ? "N must be 0 or more, not " + value : "";
      },
      "N>=0");
  for (CLI::Option* rule : rules) rule->check(non_negative);
  sub->add_option("--prefix", opts->prefix, "consider only snapshots whose name starts with PREFIX")
      ->option_text("PREFIX");
  sub->add_flag("-n,--dry-run", opts->dry_run, "show what would be deleted, delete nothing");
  sub->footer("A snapshot is kept when any rule keeps it; at least one --keep-* rule is required.");
  sub->callback([chosen, opts, rules] {
    const bool any_rule = std::any_of(rules.begin(), rules.end(), [](CLI::Option* o) { return o->count() != 0; });
    if (!any_rule) {
      // Without a rule, "prune" would mean "delete everything": refuse.
      throw CLI::ValidationError("snapshot prune",
                                 "give at least one of --keep-last/--keep-hourly/--keep-daily/"
                                 "--keep-weekly");
    }
    chosen->cmd = "snapshot.prune";
    chosen->fill_args = [opts](json* args) {
      (*args)["keep_last"] = opts->keep_last;
      (*args)["keep_hourly"] = opts->keep_hourly;
      (*args)["keep_daily"] = opts->keep_daily;
      (*args)["keep_weekly"] = opts->keep_weekly;
      if (!opts->prefix.empty()) (*args)["prefix"] = opts->prefix;
      (*args)["dry_run"] = opts->dry_run;
    };
    chosen->render = render_snapshot_pruned;
  });
}

}  // namespace

void add_snapshot_commands(CLI::App* app, DaemonCommand* chosen) {
  CLI::App* snapshot = app->add_subcommand("snapshot", "create, list, inspect, delete, restore and prune snapshots");
  snapshot->require_subcommand(1);
  add_create(snapshot, chosen);
  CLI::App* list = snapshot->add_subcommand("list", "list snapshots, oldest first");
  list->callback([chosen] {
    chosen->cmd = "snapshot.list";
    chosen->render = render_snapshot_list;
  });
  add_named(snapshot, chosen, "show", "show one snapshot's details", "snapshot.show", render_snapshot);
  add_named(snapshot, chosen, "delete", "delete a snapshot (its space is reclaimed later)", "snapshot.delete",
            render_snapshot_deleted);
  add_restore(snapshot, chosen);
  add_prune(snapshot, chosen);
}

}  // namespace portalbd::ctl
