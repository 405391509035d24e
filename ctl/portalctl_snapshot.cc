// `portalctl snapshot create|list|show|delete|restore|prune`: thin mappings
// onto the daemon's snapshot.* commands (ctl/PROTOCOL.md). The daemon checks
// names and does the work; portalctl only checks what it parses itself.
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ctl/human_format.h"
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

void add_prune(CLI::App* snapshot, DaemonCommand* chosen) {
  struct Options {
    uint64_t keep_last = 0;
    std::string older_than;
    bool include_auto = false;
    bool dry_run = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* sub = snapshot->add_subcommand(
      "prune", "delete old snapshots: all but the newest N, and/or those older than a duration");
  CLI::Option* keep = sub->add_option("--keep-last", opts->keep_last, "keep the N newest snapshots")
                          ->option_text("N");
  CLI::Option* older = sub->add_option("--older-than", opts->older_than,
                                       "delete snapshots older than this: 90s, 30m, 12h, 7d, 2w")
                           ->option_text("DURATION");
  sub->add_flag("--include-auto", opts->include_auto, "also prune automatic snapshots kept by restore");
  sub->add_flag("-n,--dry-run", opts->dry_run, "show what would be deleted, delete nothing");
  sub->footer("With both --keep-last and --older-than, a snapshot is deleted only when both rules allow it.");
  sub->callback([chosen, opts, keep, older] {
    if (keep->count() == 0 && older->count() == 0) {
      throw CLI::ValidationError("snapshot prune", "give --keep-last N and/or --older-than DURATION");
    }
    uint64_t older_s = 0;
    if (older->count() != 0 && !parse_duration_s(opts->older_than, &older_s)) {
      throw CLI::ValidationError("--older-than",
                                 "'" + opts->older_than + "' is not a duration (examples: 90s, 30m, 12h, 7d)");
    }
    const bool has_keep = keep->count() != 0;
    const bool has_older = older->count() != 0;
    chosen->cmd = "snapshot.prune";
    chosen->fill_args = [opts, has_keep, has_older, older_s](json* args) {
      if (has_keep) (*args)["keep_last"] = opts->keep_last;
      if (has_older) (*args)["older_than_s"] = older_s;
      (*args)["include_auto"] = opts->include_auto;
      (*args)["dry_run"] = opts->dry_run;
    };
    chosen->render = render_snapshot_pruned;
  });
}

}  // namespace

void add_snapshot_commands(CLI::App* app, DaemonCommand* chosen) {
  CLI::App* snapshot = app->add_subcommand("snapshot", "create, list, inspect, delete, restore and prune snapshots");
  snapshot->require_subcommand(1);
  add_named(snapshot, chosen, "create", "snapshot the volume now (includes every write answered so far)",
            "snapshot.create", render_snapshot);
  CLI::App* list = snapshot->add_subcommand("list", "list snapshots, oldest first");
  list->callback([chosen] {
    chosen->cmd = "snapshot.list";
    chosen->render = render_snapshot_list;
  });
  add_named(snapshot, chosen, "show", "show one snapshot's details", "snapshot.show", render_snapshot);
  add_named(snapshot, chosen, "delete", "delete a snapshot (its space is reclaimed later)", "snapshot.delete",
            render_snapshot_deleted);
  add_named(snapshot, chosen, "restore",
            "make the volume's contents those of a snapshot; the replaced state is kept as an automatic snapshot. "
            "Disconnect or unmount clients first",
            "snapshot.restore", render_snapshot_restored);
  add_prune(snapshot, chosen);
}

}  // namespace portalbd::ctl
