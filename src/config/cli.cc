// parse_daemon_command_line(): CLI11 front end over the config table. Flags
// are declared as (flag, config key) pairs so that each flag is applied and
// checked exactly like the file key it overrides.
#include "src/config/cli.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "src/config/config_keys.h"
#include "src/util/spelling.h"

namespace portalbd {
namespace {

struct FlagSpec {
  const char* flag;     // "--disk-size-gb"
  const char* key;      // the config key it overrides: "device.disk_size_gb"
  const char* metavar;  // "N"
  const char* help;
  bool absolute_path;  // relative paths are resolved against the working directory
};

// --grow is a plain switch and handled on its own.
constexpr FlagSpec kFlags[] = {
    {"--disk-size-gb", "device.disk_size_gb", "N",
     "size in GiB, up to 1073741824 (1 EiB); default: keep the volume's, 1 if new", false},
    {"--storage", "storage.url", "URL", "memory://, file:///DIR or s3://BUCKET/PREFIX; default file://<state-dir>/data",
     false},
    {"--nbd-address", "nbd.address", "HOST:PORT", "NBD TCP listen address; \"\" turns TCP off", false},
    {"--nbd-unix", "nbd.unix", "PATH", "also serve NBD on this unix socket", true},
    {"--socket", "nbd.socket", "PATH", "control socket that portalctl talks to", true},
    {"--socket-group", "nbd.socket_group", "GROUP", "let this group use portalctl (the socket becomes 0660)", false},
    {"--state-dir", "daemon.state_dir", "DIR", "index and local cache directory", true},
    {"--export-name", "nbd.export_name", "NAME", "NBD export name (snapshots are NAME@SNAPSHOT)", false},
    {"--serve-snapshot", "nbd.serve_snapshot", "SNAPSHOT",
     "serve only this snapshot, read-only, with no writer lease, beside the volume's writer", false},
    {"--trace", "nbd.trace_file", "FILE", "record every NBD request (no data) to FILE, for bench/nbd_replay", true},
    {"--metrics-address", "metrics.address", "HOST:PORT",
     "serve Prometheus metrics at http://HOST:PORT/metrics (loopback only; default off)", false},
    {"--tls", "nbd.tls", "off|on|require", "NBD over TLS (STARTTLS); require: no export in the clear", false},
    {"--tls-certificates", "nbd.tls_certificates", "DIR",
     "TLS X.509 credentials: DIR/ca-cert.pem, server-cert.pem, server-key.pem", true},
    {"--tls-psk", "nbd.tls_psk", "FILE", "TLS pre-shared keys, identity:hexkey lines (psktool's format)", true},
    {"--encryption-key-file", "encryption.key_file", "FILE",
     "encrypt everything stored with this 32-byte key (losing it loses the volume)", true},
    {"--encryption-passphrase-file", "encryption.passphrase_file", "FILE",
     "encrypt with a key derived (scrypt) from the passphrase in FILE", true},
    {"--max-connections", "nbd.max_connections", "N", "most NBD clients at once; one more is refused and logged",
     false},
    {"--log-level", "daemon.log_level", "LEVEL", "trace, debug, info, warn, error or off", false},
    {"--flush-interval-ms", "lsm.flush_interval_ms", "N", "upload buffered writes at least this often", false},
    {"--flush-timeout-ms", "lsm.flush_timeout_ms", "N",
     "while storage fails, FLUSH retries this long before EIO (0: EIO at once)", false},
    {"--upload-concurrency", "lsm.upload_concurrency", "N",
     "segments encoded and uploaded at once, 1-16 (0: 4 on s3://, else 1)", false},
    {"--gc-interval-s", "gc.interval_s", "N", "background garbage collection every N seconds (0: off)", false},
    {"--gc-grace-ms", "gc.grace_ms", "N", "delete unreferenced segments this long after GC finds them", false},
};

constexpr const char* kExample = R"(  [device]
  disk_size_gb = 10

  [storage]
  url = "s3://bucket/path"

  [nbd]
  address = "127.0.0.1:10809"
  socket = "/run/portalbd/portalbd.sock"

  [lsm]
  flush_interval_ms = 1000
  l0_sst_size_bytes = 67108864)";

std::string footer() {
  std::ostringstream out;
  out << "Settings come from, last one winning: defaults, the config file (-c FILE or\n"
         "$PORTALBD_CONFIG), then flags.\n\n"
         "Config file keys (TOML):\n";
  for (const ConfigKey& k : config_keys()) {
    const std::string name = k.name;
    out << "  " << name << std::string(name.size() < 24 ? 24 - name.size() : 1, ' ') << k.help << "\n";
  }
  out << "\nExample:\n"
      << kExample << "\n\n"
      << "Exit status: 0 clean shutdown, 1 runtime failure, 2 usage or configuration error.";
  return out.str();
}

// The flag's default as shown in --help.
std::string default_text(const ConfigKey& key, const Config& defaults) {
  if (key.type == ConfigKey::Type::kString && (defaults.*key.string_field).empty()) return "";
  if (key.set_marker != nullptr) return "";  // explained in the help text instead
  std::string text = config_value_text(key, defaults);
  if (key.type == ConfigKey::Type::kString) text = defaults.*key.string_field;  // unquoted reads better here
  return text;
}

Status apply_flag(const FlagSpec& spec, const ConfigKey& key, const std::string& raw, Config* cfg) {
  auto where = std::string(spec.flag) + " " + (raw.empty() ? "\"\"" : raw);
  if (key.type == ConfigKey::Type::kUint) {
    uint64_t v = 0;
    const char* end = raw.data() + raw.size();
    auto [ptr, ec] = std::from_chars(raw.data(), end, v);
    if (raw.empty() || ec != std::errc() || ptr != end) {
      return Status::InvalidArgument(where + ": expected a non-negative integer");
    }
    cfg->*key.uint_field = v;
  } else {
    std::string value = raw;
    if (spec.absolute_path && !value.empty()) value = std::filesystem::absolute(value).lexically_normal().string();
    cfg->*key.string_field = value;
  }
  if (key.set_marker != nullptr) cfg->*key.set_marker = true;
  return check_config_key(key, *cfg).With(where);
}

int fail(std::ostream& err, const std::string& message) {
  err << "portalbd: " << message << "\n";
  return 2;
}

// For a flag CLI11 does not know ("--disk-sise-gb"), a message naming it and
// the flag probably meant; otherwise CLI11's own `what`.
std::string unknown_flag_message(const CLI::App& app, const std::vector<std::string>& args, const std::string& what) {
  std::vector<std::string> known;
  for (const CLI::Option* opt : app.get_options()) {
    for (const std::string& name : opt->get_lnames()) known.push_back("--" + name);
  }
  for (const std::string& arg : args) {
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) continue;
    const std::string name = arg.substr(0, arg.find('='));
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    const std::string best = closest_name(name, known);
    return "unknown option " + name + (best.empty() ? "" : "; did you mean " + best + "?");
  }
  return what;
}

}  // namespace

DaemonCliEnvironment DaemonCliEnvironment::current() {
  DaemonCliEnvironment env;
  env.user = UserEnvironment::current();
  const char* v = std::getenv("PORTALBD_CONFIG");
  if (v != nullptr) env.portalbd_config = v;
  return env;
}

CliOutcome parse_daemon_command_line(const std::vector<std::string>& args, const std::string& version,
                                     const DaemonCliEnvironment& env, std::ostream& out, std::ostream& err) {
  CliOutcome outcome;
  const Config defaults = default_config(env.user);

  CLI::App app("portalbd " + version +
                   ": serves a block device over NBD, stored in object storage,\n"
                   "with atomic snapshots driven by portalctl.",
               "portalbd");
  app.set_version_flag("--version", "portalbd " + version, "print the version and exit");
  app.get_formatter()->column_width(32);
  app.footer(footer());

  std::string config_path;
  app.add_option("-c,--config", config_path, "TOML config file (default: $PORTALBD_CONFIG if set)")
      ->option_text("FILE");
  bool grow = false;
  app.add_flag("--grow", grow, "let --disk-size-gb grow an existing volume (never shrinks)");
  bool repair = false;
  app.add_flag("--repair", repair,
               "open a volume whose storage is damaged (missing or torn segments, a lost roots record), accepting "
               "the loss: unreadable objects move under quarantine/ and the log says what is lost");
  bool tls_verify_peer = false;
  app.add_flag("--tls-verify-peer", tls_verify_peer,
               "TLS clients must present a certificate signed by the CA in --tls-certificates DIR/ca-cert.pem");
  std::string journal;
  app.add_option("--journal", journal,
                 "write-ahead journal on local disk: on (FLUSH = one fdatasync, uploads behind; the default on "
                 "file://) or off (FLUSH waits for the object store; the default on s3://)")
      ->option_text("on|off")
      ->check(CLI::IsMember({"on", "off"}));
  bool take_over = false;
  app.add_flag("--take-over", take_over,
               "break another daemon's claim on the volume (only when that daemon is gone: it is fenced and stops "
               "writing at its next upload)");

  std::vector<std::string> raw(std::size(kFlags));
  std::vector<CLI::Option*> options;
  for (size_t i = 0; i < std::size(kFlags); ++i) {
    const ConfigKey* key = find_config_key(kFlags[i].key);
    CLI::Option* opt = app.add_option(kFlags[i].flag, raw[i], kFlags[i].help)->option_text(kFlags[i].metavar);
    std::string def = default_text(*key, defaults);
    if (!def.empty()) opt->option_text(std::string(kFlags[i].metavar) + " [" + def + "]");
    options.push_back(opt);
  }

  std::vector<const char*> argv{"portalbd"};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    outcome.exit_code = 0;
    return outcome;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    outcome.exit_code = 0;
    return outcome;
  } catch (const CLI::CallForVersion& v) {
    out << v.what() << "\n";
    outcome.exit_code = 0;
    return outcome;
  } catch (const CLI::ParseError& e) {
    outcome.exit_code = fail(err, unknown_flag_message(app, args, e.what()) + " (see portalbd --help)");
    return outcome;
  }

  Config cfg = defaults;
  if (config_path.empty()) config_path = env.portalbd_config;
  if (!config_path.empty()) {
    Status st = apply_config_file(config_path, &cfg);
    if (!st.ok()) {
      outcome.exit_code = fail(err, st.message());
      return outcome;
    }
    cfg.config_file = std::filesystem::absolute(config_path).lexically_normal().string();
  }
  if (grow) cfg.grow = true;
  if (take_over) cfg.take_over = true;
  if (repair) cfg.repair = true;
  if (tls_verify_peer) cfg.tls_verify_peer = true;
  if (!journal.empty()) {
    cfg.journal_enabled = journal == "on";
    cfg.journal_enabled_set = true;
  }
  for (size_t i = 0; i < std::size(kFlags); ++i) {
    if (options[i]->count() == 0) continue;
    Status st = apply_flag(kFlags[i], *find_config_key(kFlags[i].key), raw[i], &cfg);
    if (!st.ok()) {
      outcome.exit_code = fail(err, st.message());
      return outcome;
    }
  }
  Status st = validate_config(cfg);
  if (!st.ok()) {
    outcome.exit_code = fail(err, st.message());
    return outcome;
  }
  outcome.config = std::move(cfg);
  return outcome;
}

CliOutcome parse_daemon_command_line(int argc, char** argv, const std::string& version) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  return parse_daemon_command_line(args, version, DaemonCliEnvironment::current(), std::cout, std::cerr);
}

}  // namespace portalbd
