// Tests for the daemon command line: precedence, flag checks, help, version.
#include "src/config/cli.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace portalbd {
namespace {

struct Run {
  CliOutcome outcome;
  std::string out;
  std::string err;
};

DaemonCliEnvironment test_env() {
  DaemonCliEnvironment env;
  env.user.uid = 1000;
  env.user.home = "/home/ann";
  env.user.xdg_runtime_dir = "/run/user/1000";
  return env;
}

Run run(const std::vector<std::string>& args, const DaemonCliEnvironment& env = test_env()) {
  std::ostringstream out, err;
  Run r;
  r.outcome = parse_daemon_command_line(args, "9.9.9", env, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// A config file in a fresh temp directory, removed at scope exit.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pbd-cli-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/portalbd.toml";
    std::ofstream(path_) << text;
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

}  // namespace

TEST_SUITE("config.cli") {
  TEST_CASE("no arguments: the user's defaults") {
    Run r = run({});
    REQUIRE(r.outcome.exit_code == -1);
    CHECK(r.outcome.config.control_socket == "/run/user/1000/portalbd/portalbd.sock");
    CHECK(r.outcome.config.state_dir == "/home/ann/.local/share/portalbd");
    CHECK(r.err.empty());
  }

  TEST_CASE("flags override the file, the file overrides defaults") {
    TempFile file("[device]\ndisk_size_gb = 10\n[nbd]\naddress = \"127.0.0.1:2000\"\nexport_name = \"fromfile\"\n");
    Run r = run({"-c", file.path(), "--nbd-address", "0.0.0.0:3000", "--disk-size-gb", "20", "--grow"});
    REQUIRE_MESSAGE(r.outcome.exit_code == -1, r.err);
    const Config& cfg = r.outcome.config;
    CHECK(cfg.nbd_address == "0.0.0.0:3000");
    CHECK(cfg.disk_size_gb == 20);
    CHECK(cfg.disk_size_set);
    CHECK(cfg.grow);
    CHECK(cfg.export_name == "fromfile");
    CHECK(cfg.config_file == file.path());
  }

  TEST_CASE("$PORTALBD_CONFIG is used when -c is absent, and -c wins over it") {
    TempFile env_file("[nbd]\nexport_name = \"env\"\n");
    TempFile flag_file("[nbd]\nexport_name = \"flag\"\n");
    DaemonCliEnvironment env = test_env();
    env.portalbd_config = env_file.path();
    CHECK(run({}, env).outcome.config.export_name == "env");
    CHECK(run({"--config", flag_file.path()}, env).outcome.config.export_name == "flag");
  }

  TEST_CASE("every flag maps to its field") {
    Run r = run({"--storage", "memory://", "--nbd-unix", "/tmp/n.sock", "--socket", "/tmp/c.sock", "--state-dir",
                 "/srv/p", "--export-name", "vol", "--log-level", "debug", "--flush-interval-ms", "250",
                 "--upload-concurrency", "8", "--max-connections", "7"});
    REQUIRE_MESSAGE(r.outcome.exit_code == -1, r.err);
    const Config& cfg = r.outcome.config;
    CHECK(cfg.storage_url == "memory://");
    CHECK(cfg.nbd_unix == "/tmp/n.sock");
    CHECK(cfg.control_socket == "/tmp/c.sock");
    CHECK(cfg.state_dir == "/srv/p");
    CHECK(cfg.export_name == "vol");
    CHECK(cfg.log_level == "debug");
    CHECK(cfg.flush_interval_ms == 250);
    CHECK(cfg.upload_concurrency == 8);
    CHECK(cfg.max_connections == 7);
  }

  TEST_CASE("--serve-snapshot: a snapshot name, and none of the options that would write to storage") {
    Run r = run({"--serve-snapshot", "nightly-1"});
    REQUIRE_MESSAGE(r.outcome.exit_code == -1, r.err);
    CHECK(r.outcome.config.serve_snapshot == "nightly-1");
    TempFile file("[nbd]\nserve_snapshot = \"fromfile\"\n");
    CHECK(run({"-c", file.path()}).outcome.config.serve_snapshot == "fromfile");
    for (const char* bad : {"a/b", "live", "x y"}) {
      Run b = run({"--serve-snapshot", bad});
      CHECK(b.outcome.exit_code == 2);
      CHECK(b.err.find("--serve-snapshot") != std::string::npos);
    }
    for (std::vector<std::string> extra :
         {std::vector<std::string>{"--take-over"}, {"--repair"}, {"--disk-size-gb", "2", "--grow"}}) {
      std::vector<std::string> args{"--serve-snapshot", "s1"};
      args.insert(args.end(), extra.begin(), extra.end());
      Run b = run(args);
      CHECK(b.outcome.exit_code == 2);
      CHECK(b.err.find("read-only") != std::string::npos);
    }
  }

  TEST_CASE("relative paths in flags become absolute") {
    Run r = run({"--state-dir", "rel/dir"});
    REQUIRE(r.outcome.exit_code == -1);
    CHECK(r.outcome.config.state_dir == (std::filesystem::current_path() / "rel/dir").string());
  }

  TEST_CASE("a bad flag value is one line naming the flag, exit 2") {
    Run r = run({"--disk-size-gb", "0"});
    CHECK(r.outcome.exit_code == 2);
    CHECK(r.err == "portalbd: --disk-size-gb 0: must be at least 1\n");
    r = run({"--disk-size-gb", "ten"});
    CHECK(r.outcome.exit_code == 2);
    CHECK(r.err == "portalbd: --disk-size-gb ten: expected a non-negative integer\n");
    r = run({"--upload-concurrency", "17"});
    CHECK(r.outcome.exit_code == 2);
    CHECK(r.err == "portalbd: --upload-concurrency 17: must be between 0 (automatic) and 16\n");
    r = run({"--max-connections", "0"});
    CHECK(r.outcome.exit_code == 2);
    CHECK(r.err == "portalbd: --max-connections 0: must be between 1 and 65536\n");
    r = run({"--storage", "ftp://x"});
    CHECK(r.outcome.exit_code == 2);
    CHECK(r.err.find("unsupported storage URL scheme 'ftp'") != std::string::npos);
  }

  TEST_CASE("an unknown flag is a usage error") {
    Run r = run({"--disk-size", "3"});
    CHECK(r.outcome.exit_code == 2);
    CHECK(r.err.rfind("portalbd: ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }

  TEST_CASE("a config file error exits 2 with one line") {
    TempFile file("[lsm]\nflush_intervall_ms = 3\n");
    Run r = run({"-c", file.path()});
    CHECK(r.outcome.exit_code == 2);
    CHECK(r.err.find(file.path() + ": unknown key 'lsm.flush_intervall_ms'") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }

  TEST_CASE("--version and --help") {
    Run r = run({"--version"});
    CHECK(r.outcome.exit_code == 0);
    CHECK(r.out == "portalbd 9.9.9\n");
    r = run({"--help"});
    CHECK(r.outcome.exit_code == 0);
    for (const char* text :
         {"--disk-size-gb", "--grow", "--storage", "--nbd-address", "--nbd-unix", "--socket", "--state-dir",
          "--export-name", "--log-level", "--flush-interval-ms", "--version", "127.0.0.1:10809",
          "/run/user/1000/portalbd/portalbd.sock", "lsm.l0_sst_size_bytes", "[storage]", "PORTALBD_CONFIG"}) {
      CAPTURE(std::string(text));
      CHECK(r.out.find(text) != std::string::npos);
    }
  }

  TEST_CASE("--repair and [storage] repair: off unless asked, and said in --help") {
    CHECK_FALSE(run({}).outcome.config.repair);
    CHECK(run({"--repair"}).outcome.config.repair);
    TempFile file("[storage]\nrepair = true\n");
    CHECK(run({"-c", file.path()}).outcome.config.repair);
    Run help = run({"--help"});
    CHECK(help.out.find("--repair") != std::string::npos);
    CHECK(help.out.find("quarantine/") != std::string::npos);
  }

  TEST_CASE("tls flags and [nbd] tls keys: off by default, credentials required, modes checked") {
    const Config defaults = run({}).outcome.config;
    CHECK(defaults.tls == "off");
    CHECK_FALSE(defaults.tls_verify_peer);
    Run on = run({"--tls", "require", "--tls-certificates", "/etc/pki/nbd", "--tls-verify-peer", "--tls-psk",
                  "/etc/portalbd/keys.psk"});
    REQUIRE(on.outcome.exit_code == -1);
    CHECK(on.outcome.config.tls == "require");
    CHECK(on.outcome.config.tls_certificates == "/etc/pki/nbd");
    CHECK(on.outcome.config.tls_verify_peer);
    CHECK(on.outcome.config.tls_psk_file == "/etc/portalbd/keys.psk");

    Run bad_mode = run({"--tls", "maybe", "--tls-psk", "/k.psk"});
    CHECK(bad_mode.outcome.exit_code == 2);
    CHECK(bad_mode.err.find("--tls maybe: unknown TLS mode (expected off, on or require)") != std::string::npos);
    Run no_credentials = run({"--tls", "on"});
    CHECK(no_credentials.outcome.exit_code == 2);
    CHECK(no_credentials.err.find("needs nbd.tls_certificates or nbd.tls_psk") != std::string::npos);
    Run verify_without_ca = run({"--tls", "on", "--tls-psk", "/k.psk", "--tls-verify-peer"});
    CHECK(verify_without_ca.outcome.exit_code == 2);
    CHECK(verify_without_ca.err.find("nbd.tls_verify_peer needs nbd.tls_certificates") != std::string::npos);

    TempFile file("[nbd]\ntls = \"on\"\ntls_psk = \"/etc/portalbd/keys.psk\"\ntls_verify_peer = false\n");
    Run from_file = run({"-c", file.path()});
    REQUIRE(from_file.outcome.exit_code == -1);
    CHECK(from_file.outcome.config.tls == "on");
    CHECK(from_file.outcome.config.tls_psk_file == "/etc/portalbd/keys.psk");
    CHECK(run({"--help"}).out.find("--tls-verify-peer") != std::string::npos);
  }
}

}  // namespace portalbd
