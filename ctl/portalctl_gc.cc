// `portalctl gc [--wait]` and `portalctl checkpoint`.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ctl/human_format.h"
#include "ctl/portalctl_commands.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

uint64_t field(const json& r, const char* key) { return r.is_object() ? r.value(key, uint64_t{0}) : 0; }

void render_gc(const json& r, std::ostream& out) {
  const uint64_t stored = field(r, "bytes_stored"), live = field(r, "bytes_live");
  out << "Garbage collection: " << field(r, "passes") << " pass(es)\n"
      << "  deleted:    " << field(r, "segments_deleted") << " segments, " << format_bytes(field(r, "bytes_deleted"))
      << "\n"
      << "  rewritten:  " << field(r, "segments_rewritten") << " segments, "
      << format_bytes(field(r, "bytes_rewritten")) << " copied\n"
      << "  layers:     " << field(r, "layers_merged") << " merged, " << field(r, "layers_dropped") << " dropped\n"
      << "  waiting:    " << field(r, "segments_waiting") << " segments in their grace period\n"
      << "  stored:     " << format_bytes(stored) << " for " << format_bytes(live) << " live";
  if (live > 0) out << " (" << (stored * 100 / live) << "%)";
  out << "\n";
}

}  // namespace

void add_gc_commands(CLI::App* app, DaemonCommand* chosen) {
  CLI::App* gc = app->add_subcommand(
      "gc", "reclaim space now: overwritten, trimmed and deleted-snapshot data (runs in the background too)");
  auto wait = std::make_shared<bool>(false);
  gc->add_flag("--wait", *wait,
               "pass again until unreferenced segments have waited out the grace period and are deleted");
  gc->callback([chosen, wait] {
    chosen->cmd = "gc";
    chosen->fill_args = [wait](json* args) { (*args)["wait"] = *wait; };
    chosen->render = render_gc;
  });

  CLI::App* ckpt = app->add_subcommand("checkpoint", "store a compressed copy of the index in object storage now");
  ckpt->callback([chosen] {
    chosen->cmd = "checkpoint";
    chosen->render = [](const json& r, std::ostream& out) {
      out << "Checkpoint written at sequence " << field(r, "checkpoint_seq") << "\n";
    };
  });
}

}  // namespace portalbd::ctl
