#include "daemon/control_handlers.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "ctl/command_progress.h"
#include "ctl/control_server.h"
#include "ctl/human_format.h"
#include "daemon/prune.h"
#include "nbd/server.h"
#include "src/config/version.h"
#include "src/engine/snapshot_reader.h"
#include "src/engine/volume.h"
#include "src/log/log.h"
#include "src/store/counting_store.h"
#include "src/store/object_store.h"
#include "src/util/clock.h"

namespace portalbd {
namespace {

using json = nlohmann::json;

// What a client still attached during a restore must do; the log warning and
// portalctl's answer say it (README "Restoring").
constexpr const char* kAttachedRestoreAdvice =
    "their page caches still hold the replaced data. Unmount filesystems before restoring; after it, detach and "
    "reattach the device (or drop its cached pages with `blockdev --flushbufs DEVICE`) before mounting again, or "
    "the stale cache is written back over the restored data";

// Snapshots named by a machine, not a person: an unnamed create and the
// snapshot cron script (auto-<time>), and the state a restore replaced
// (pre-restore-<time>, which the help of `snapshot restore` calls automatic).
bool is_automatic_name(const std::string& name) {
  return name.rfind("auto-", 0) == 0 || name.rfind("pre-restore-", 0) == 0;
}

json snapshot_json(const SnapshotInfo& s, const std::string& export_name) {
  return {{"name", s.name},
          {"id", s.uuid},
          {"created_unix_ms", s.created_unix_ms},
          {"created", rfc3339_utc(s.created_unix_ms)},
          {"written_bytes", s.written_bytes},
          {"export", export_name + "@" + s.name},
          {"auto", is_automatic_name(s.name)}};
}

Result<std::string> string_arg(const json& args, const char* key, bool required) {
  if (!args.is_object() || !args.contains(key) || args[key].is_null()) {
    if (required) return Status::InvalidArgument(std::string("missing argument '") + key + "'");
    return std::string();
  }
  if (!args[key].is_string()) return Status::InvalidArgument(std::string("argument '") + key + "' must be a string");
  return args[key].get<std::string>();
}

Result<uint64_t> count_arg(const json& args, const char* key) {
  if (!args.is_object() || !args.contains(key) || args[key].is_null()) return uint64_t{0};
  if (!args[key].is_number_unsigned()) {
    return Status::InvalidArgument(std::string("argument '") + key + "' must be a non-negative integer");
  }
  return args[key].get<uint64_t>();
}

json requests_json(const StoreRequestCounts& c) {
  return {{"put", c.put},
          {"put_if_absent", c.put_if_absent},
          {"get", c.get},
          {"get_range", c.get_range},
          {"head", c.head},
          {"list", c.list},
          {"remove", c.remove},
          {"total", c.requests()},
          {"bytes_out", c.bytes_out},
          {"bytes_in", c.bytes_in}};
}

bool bool_arg(const json& args, const char* key) {
  return args.is_object() && args.contains(key) && args[key].is_boolean() && args[key].get<bool>();
}

// One function per command: checks `args`, calls the engine, and answers in
// *out; the table at the end names them.

Status run_status(const ControlContext& ctx, const json&, json* out, ctl::Progress&) {
  VolumeStats vs = ctx.volume->stats();
  nbd::ServerStats ns = ctx.nbd->stats();
  json clients = json::array();
  for (const auto& c : ctx.nbd->clients()) {
    clients.push_back(
        {{"peer", c.peer}, {"export", c.export_name}, {"tls", c.tls}, {"connected_unix_ms", c.connected_unix_ms}});
  }
  auto snaps = ctx.volume->list_snapshots();
  const Config& cfg = *ctx.config;
  *out = {
      {"version", kVersion},
      {"volume_uuid", ctx.volume->uuid()},
      {"export", cfg.export_name},
      {"size_bytes", vs.size_bytes},
      {"storage", ctx.store->url()},
      {"nbd_address", cfg.nbd_address.empty() ? "" : ctx.nbd->tcp_address()},
      {"nbd_unix", cfg.nbd_unix},
      // How a client on this host reaches NBD under TLS (portalctl mount).
      {"nbd_tls", cfg.tls},
      {"nbd_tls_certificates", cfg.tls_certificates},
      {"nbd_tls_psk", cfg.tls_psk_file},
      {"control_socket", cfg.control_socket},
      {"state_dir", cfg.state_dir},
      {"dirty_bytes", vs.dirty_bytes},
      {"bytes_stored", vs.bytes_stored},
      {"bytes_live", vs.bytes_live},
      {"last_checkpoint",
       vs.last_checkpoint_unix_ms == 0 ? json(nullptr) : json(rfc3339_utc(vs.last_checkpoint_unix_ms))},
      {"last_checkpoint_seq", vs.last_checkpoint_seq},
      {"storage_failing_since",
       vs.storage_failing_since_unix_ms == 0 ? json(nullptr) : json(rfc3339_utc(vs.storage_failing_since_unix_ms))},
      {"last_storage_error", vs.last_storage_error.empty() ? json(nullptr) : json(vs.last_storage_error)},
      {"segments", vs.segments},
      {"snapshots", snaps.ok() ? snaps->size() : 0},
      {"uptime_s",
       std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - ctx.started).count()},
      {"clients", clients},
      {"counters",
       {{"connections_total", ns.connections_total},
        {"reads", ns.reads},
        {"writes", ns.writes},
        {"flushes", ns.flushes},
        {"trims", ns.trims},
        {"zeroes", ns.zeroes},
        {"block_status", ns.block_status},
        {"cache", ns.cache},
        {"bytes_read", ns.bytes_read},
        {"bytes_written", ns.bytes_written},
        {"errors", ns.errors},
        {"segments_written", vs.segments_written},
        {"bytes_uploaded", vs.bytes_uploaded},
        {"volume_flushes", vs.flushes},
        {"volume_flushes_grouped", vs.flushes_grouped},
        {"overwrites_in_place", vs.overwrites_in_place},
        {"flush_errors", vs.flush_errors},
        {"cache_bytes", vs.cache_bytes},
        {"cache_hits", vs.cache_hits},
        {"cache_misses", vs.cache_misses},
        {"replayed_segments", vs.replayed_segments}}},
  };
  if (const std::optional<StoreMetrics> m = ctx.store->metrics()) {
    json counters = json::object();
    for (const auto& [name, value] : m->counters) counters[name] = value;
    (*out)[m->name] = counters;
  }
  if (ctx.requests != nullptr) {
    // Requests sent to storage since start: the volume's (segments,
    // checkpoints, roots records) and the writer lease's (lock/), apart.
    (*out)["store_requests"] = requests_json(ctx.requests->counts(CountingStore::kVolume));
    (*out)["lease_requests"] = requests_json(ctx.requests->counts(CountingStore::kLease));
  }
  (*out)["counters"]["dirty_bytes"] = vs.dirty_bytes;  // the upload queue depth, in bytes
  if (ctx.reader != nullptr) {
    // A read-only snapshot reader (--serve-snapshot): no writer lease, and
    // nothing it does writes to storage.
    const SnapshotReaderStats rs = ctx.reader->stats();
    (*out)["mode"] = "snapshot-reader";
    (*out)["read_only"] = true;
    (*out)["writer_lease"] = "none (read-only snapshot reader)";
    (*out)["serving_snapshot"] = {{"name", rs.snapshot.name},
                                  {"id", rs.snapshot.uuid},
                                  {"created", rfc3339_utc(rs.snapshot.created_unix_ms)},
                                  {"loads", rs.loads},
                                  {"load_failures", rs.load_failures},
                                  {"deleted_from_storage", rs.deleted}};
  } else {
    (*out)["mode"] = "writer";
    (*out)["read_only"] = false;
  }
  if (vs.journal) {
    // What losing this host's disk would cost now: the writes not yet in
    // storage (upload lag), and how full the journal is.
    (*out)["journal"] = {{"dir", cfg.journal_dir.empty() ? cfg.state_dir + "/journal" : cfg.journal_dir},
                         {"upload_lag_bytes", vs.dirty_bytes},
                         {"upload_lag_ms", vs.upload_lag_ms},
                         {"max_lag_ms", cfg.journal_max_lag_ms},
                         {"direct_write_bytes", vs.journal_direct_write_bytes},
                         {"direct_writes", vs.journal_direct_writes},
                         {"used_bytes", vs.journal_used_bytes},
                         {"capacity_bytes", vs.journal_capacity_bytes},
                         {"live_records", vs.journal_live_records},
                         {"syncs", vs.journal_syncs},
                         {"fdatasyncs", vs.journal_fdatasyncs}};
  } else {
    (*out)["journal"] = nullptr;
  }
  // The layer chain reads resolve through: how deep it is, the flattened
  // base that spares reads the walk (the view of layer flat_layer, 0: none),
  // and the maps reads overlaid per read (resolve_maps / resolves).
  (*out)["index"] = {{"chain_depth", vs.chain_depth},
                     {"flat_layer", vs.flat.top_layer},
                     {"flat_extents", vs.flat.extents},
                     {"flat_folds", vs.flat.folds},
                     {"flat_rebuilds", vs.flat.rebuilds},
                     {"flat_min_depth", vs.flat.min_depth},
                     {"resolves", vs.resolves},
                     {"resolve_maps", vs.resolve_maps},
                     // The extents in memory: the index stays on disk, and reads
                     // load chunks of it (1 MiB of the device each) into a
                     // cache of cache_budget_bytes ([cache] index_bytes).
                     {"cache_budget_bytes", vs.index_cache.budget_bytes},
                     {"cached_extents", vs.index_cache.resident_extents},
                     {"cached_chunks", vs.index_cache.chunks_loaded},
                     {"chunk_loads", vs.index_cache.chunk_loads},
                     {"rows_loaded", vs.index_cache.rows_loaded},
                     {"chunks_dropped", vs.index_cache.chunks_dropped},
                     {"resident_layers", vs.index_cache.resident_layers}};
  // Fetches of frames the memory cache missed: GETs, disk-cache reads, and
  // read-ahead (prefetched: frames it brought in; joined: a read waited for
  // a fetch already running instead of fetching again; cached_reads: frames
  // read from file pages the kernel held, without a hand-off).
  (*out)["fetch"] = {{"concurrency", vs.fetch_concurrency},
                     {"read_ahead_bytes", vs.read_ahead_bytes},
                     {"gets", vs.fetch.gets},
                     {"bytes_fetched", vs.fetch.bytes_fetched},
                     {"disk_hits", vs.fetch.disk_hits},
                     {"joined", vs.fetch.joined},
                     {"prefetched", vs.fetch.prefetched},
                     {"prefetch_dropped", vs.fetch.prefetch_dropped},
                     {"in_flight", vs.fetch.in_flight},
                     {"threads", vs.fetch.threads},
                     {"timeouts", vs.fetch.timeouts},
                     {"cached_reads", vs.fetch.cached_reads}};
  if (vs.disk_cache) {
    // The local disk cache of fetched frames (s3://): hits are reads that
    // cost no GET, crc_drops cached frames that failed their check (fetched again),
    // dropped the frames of segments GC deleted, skipped frames not kept
    // because the cache's writer was behind, pending_bytes what it has yet to write.
    (*out)["disk_cache"] = {{"dir", vs.disk_cache_dir},
                            {"capacity_bytes", vs.disk.capacity_bytes},
                            {"bytes", vs.disk.bytes},
                            {"frames", vs.disk.frames},
                            {"hits", vs.disk.hits},
                            {"misses", vs.disk.misses},
                            {"inserts", vs.disk.inserts},
                            {"evictions", vs.disk.evictions},
                            {"crc_drops", vs.disk.crc_drops},
                            {"io_errors", vs.disk.io_errors},
                            {"dropped", vs.disk.dropped},
                            {"skipped", vs.disk.skipped},
                            {"pending_bytes", vs.disk.pending_bytes}};
  } else {
    (*out)["disk_cache"] = nullptr;
  }
  return Status::OK();
}

Status run_snapshot_create(const ControlContext& ctx, const json& args, json* out, ctl::Progress&) {
  auto name = string_arg(args, "name", false);
  if (!name.ok()) return name.status();
  // Absent or null asks for an automatic name; an empty string is a mistake.
  if (name->empty() && args.is_object() && args.contains("name") && args["name"].is_string()) {
    return Status::InvalidArgument("snapshot name must not be empty (leave it out for auto-<UTC time>)");
  }
  // A leading '-' would read as an option wherever the name is typed again
  // (portalctl snapshot delete NAME, shell scripts).
  if (!name->empty() && (*name)[0] == '-') {
    return Status::InvalidArgument("snapshot name '" + *name + "' must not start with '-'");
  }
  std::string chosen = name->empty() ? "auto-" + compact_utc(now_unix_ms()) : *name;
  auto info = ctx.volume->create_snapshot(chosen);
  if (!info.ok()) return info.status();
  *out = snapshot_json(*info, ctx.config->export_name);
  return Status::OK();
}

Status run_snapshot_list(const ControlContext& ctx, const json&, json* out, ctl::Progress&) {
  auto list = ctx.volume->list_snapshots();
  if (!list.ok()) return list.status();
  json arr = json::array();
  for (const auto& s : *list) arr.push_back(snapshot_json(s, ctx.config->export_name));
  *out = {{"snapshots", arr}};
  return Status::OK();
}

Status run_snapshot_show(const ControlContext& ctx, const json& args, json* out, ctl::Progress&) {
  auto name = string_arg(args, "name", true);
  if (!name.ok()) return name.status();
  auto info = ctx.volume->find_snapshot(*name);
  if (!info.ok()) return info.status();
  *out = snapshot_json(*info, ctx.config->export_name);
  return Status::OK();
}

Status run_snapshot_delete(const ControlContext& ctx, const json& args, json* out, ctl::Progress&) {
  auto name = string_arg(args, "name", true);
  if (!name.ok()) return name.status();
  PBD_RETURN_IF_ERROR(ctx.volume->delete_snapshot(*name));
  *out = {{"deleted", *name}};
  return Status::OK();
}

Status run_snapshot_restore(const ControlContext& ctx, const json& args, json* out, ctl::Progress& progress) {
  const std::string& export_name = ctx.config->export_name;
  auto name = string_arg(args, "name", true);
  if (!name.ok()) return name.status();
  // One entry per client, however many connections it has open (multi-conn).
  std::vector<std::string> peers;
  for (const auto& c : ctx.nbd->clients()) {
    if (c.export_name == export_name && std::find(peers.begin(), peers.end(), c.peer) == peers.end()) {
      peers.push_back(c.peer);
    }
  }
  std::string attached;
  for (const auto& peer : peers) attached += (attached.empty() ? "" : ",") + peer;
  if (!attached.empty()) {
    log::get("daemon")->warn("restoring while clients are attached to the live export: {} snapshot={} clients={}",
                             kAttachedRestoreAdvice, *name, attached);
    progress.note("restore: clients are attached to the live export (" + attached + ")");
  }
  progress.note("restore: swapping in snapshot '" + *name + "'");
  auto r = ctx.volume->restore_snapshot(*name, bool_arg(args, "discard_current"));
  if (!r.ok()) return r.status();
  *out = {{"restored", r->restored},
          {"pre_restore", r->pre_restore.empty() ? json(nullptr) : json(r->pre_restore)},
          {"attached_clients", attached}};
  return Status::OK();
}

Status run_gc(const ControlContext& ctx, const json& args, json* out, ctl::Progress& progress) {
  GcOptions options;
  options.grace_ms = static_cast<int64_t>(ctx.config->gc_grace_ms);
  const bool wait = bool_arg(args, "wait");
  // With --wait, pass again until nothing waits out its grace period (bounded).
  const int64_t deadline = now_unix_ms() + options.grace_ms + 60000;
  GcReport total;
  int passes = 0;
  for (;;) {
    auto r = ctx.volume->gc(options);
    if (!r.ok()) return r.status();
    ++passes;
    total.layers_dropped += r->layers_dropped;
    total.layers_merged += r->layers_merged;
    total.segments_rewritten += r->segments_rewritten;
    total.bytes_rewritten += r->bytes_rewritten;
    total.buffers_compacted += r->buffers_compacted;
    total.segments_deleted += r->segments_deleted;
    total.bytes_deleted += r->bytes_deleted;
    total.segments_waiting = r->segments_waiting;
    total.next_delete_unix_ms = r->next_delete_unix_ms;
    total.bytes_stored = r->bytes_stored;
    total.bytes_live = r->bytes_live;
    if (!wait || r->segments_waiting == 0 || now_unix_ms() > deadline) break;
    const int64_t next_in_ms = std::max<int64_t>(r->next_delete_unix_ms - now_unix_ms(), 0);
    progress.note("pass " + std::to_string(passes) + ": deleted " + std::to_string(r->segments_deleted) +
                  " segments (" + ctl::format_bytes(r->bytes_deleted) + "); " + std::to_string(r->segments_waiting) +
                  " segments waiting out the grace period, next deletion in " +
                  std::to_string((next_in_ms + 999) / 1000) + " s");
    const int64_t sleep_ms = std::clamp<int64_t>(next_in_ms, 10, 5000);
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  }
  if (wait) {
    log::get("daemon")->info("gc --wait done passes={} segments_deleted={} bytes_deleted={} segments_waiting={}",
                             passes, total.segments_deleted, total.bytes_deleted, total.segments_waiting);
  }
  *out = {{"passes", passes},
          {"layers_dropped", total.layers_dropped},
          {"layers_merged", total.layers_merged},
          {"segments_rewritten", total.segments_rewritten},
          {"bytes_rewritten", total.bytes_rewritten},
          {"buffers_compacted", total.buffers_compacted},
          {"segments_deleted", total.segments_deleted},
          {"bytes_deleted", total.bytes_deleted},
          {"segments_waiting", total.segments_waiting},
          {"bytes_stored", total.bytes_stored},
          {"bytes_live", total.bytes_live}};
  return Status::OK();
}

Status run_checkpoint(const ControlContext& ctx, const json&, json* out, ctl::Progress& progress) {
  progress.note("checkpoint: writing a compressed copy of the index to object storage");
  auto seq = ctx.volume->checkpoint();
  if (!seq.ok()) return seq.status();
  *out = {{"checkpoint_seq", *seq}};
  return Status::OK();
}

Status run_snapshot_prune(const ControlContext& ctx, const json& args, json* out, ctl::Progress&) {
  PrunePolicy policy;
  for (auto [key, field] :
       {std::pair{"keep_last", &policy.keep_last}, std::pair{"keep_hourly", &policy.keep_hourly},
        std::pair{"keep_daily", &policy.keep_daily}, std::pair{"keep_weekly", &policy.keep_weekly}}) {
    auto v = count_arg(args, key);
    if (!v.ok()) return v.status();
    *field = *v;
  }
  auto prefix = string_arg(args, "prefix", false);
  if (!prefix.ok()) return prefix.status();
  policy.prefix = *prefix;
  const bool dry_run = bool_arg(args, "dry_run");
  auto list = ctx.volume->list_snapshots();
  if (!list.ok()) return list.status();
  std::vector<PruneCandidate> candidates;
  for (const auto& s : *list) candidates.push_back({s.name, s.created_unix_ms});
  auto plan = plan_prune(candidates, policy);
  if (!plan.ok()) return plan.status();
  json deleted = json::array();
  for (const auto& name : plan->remove) {
    if (!dry_run) PBD_RETURN_IF_ERROR(ctx.volume->delete_snapshot(name).With("prune"));
    deleted.push_back(name);
  }
  *out = {{"dry_run", dry_run}, {"deleted", deleted}, {"kept", plan->keep}};
  return Status::OK();
}

// The commands, by name (docs/control-protocol.md).
struct Command {
  const char* name;
  Status (*run)(const ControlContext& ctx, const json& args, json* out, ctl::Progress& progress);
  bool changes_volume;  // refused by a read-only snapshot reader
};
constexpr Command kCommands[] = {
    {"status", run_status, false},
    {"snapshot.create", run_snapshot_create, true},
    {"snapshot.list", run_snapshot_list, false},
    {"snapshot.show", run_snapshot_show, false},
    {"snapshot.delete", run_snapshot_delete, true},
    {"snapshot.restore", run_snapshot_restore, true},
    {"gc", run_gc, true},
    {"checkpoint", run_checkpoint, true},
    {"snapshot.prune", run_snapshot_prune, true},
};

// A snapshot reader runs a command on the volume of its current load,
// held for the call (a reload may replace it meanwhile).
Status run_on_reader(const Command& command, ControlContext ctx, const json& args, json* out, ctl::Progress& p) {
  if (command.changes_volume) {
    return Status::ReadOnly(std::string(command.name) + " refused: this portalbd serves snapshot '" +
                            ctx.reader->snapshot_name() + "' of " + ctx.store->url() +
                            " read-only (--serve-snapshot) and holds no writer lease; run it on the daemon that "
                            "writes the volume");
  }
  const std::shared_ptr<Volume> volume = ctx.reader->volume();
  if (!volume) return Status::Cancelled("the snapshot reader is closed");
  ctx.volume = volume.get();
  return command.run(ctx, args, out, p);
}

}  // namespace

void register_control_handlers(ctl::ControlServer* server, ControlContext ctx) {
  for (const Command& command : kCommands) {
    server->on_with_progress(command.name, [ctx, command](const json& args, json* out, ctl::Progress& p) {
      if (ctx.reader != nullptr) return run_on_reader(command, ctx, args, out, p);
      return command.run(ctx, args, out, p);
    });
  }
}

}  // namespace portalbd
