// Tests for the config file loader, defaults and validator.
#include "src/config/config.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace portalbd {
namespace {

// A temporary directory removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pbd-config-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Loads `text` and returns the error message ("" on success).
std::string load_error(const std::string& text, Config* cfg = nullptr) {
  TempDir dir;
  std::string path = dir.write("a.toml", text);
  Config local = default_config();
  Status st = apply_config_file(path, cfg ? cfg : &local);
  if (st.ok()) return "";
  CHECK(st.message().find(path) != std::string::npos);  // every error names the file
  return st.message();
}

constexpr const char* kSeedExample = R"([device]
disk_size_gb = 10

[storage]
url = "s3://bucket/path"
# (omit for in-memory)

[nbd]
address = "127.0.0.1:10809"
socket = "/run/portalbd/portalbd.sock"

[lsm]
flush_interval_ms = 1000
l0_sst_size_bytes = 67108864
)";

}  // namespace

TEST_SUITE("config.file") {
  TEST_CASE("the seed's example loads exactly as written") {
    TempDir dir;
    std::string path = dir.write("seed.toml", kSeedExample);
    Config cfg = default_config();
    Status st = apply_config_file(path, &cfg);
    REQUIRE_MESSAGE(st.ok(), st.ToString());
    CHECK(cfg.disk_size_gb == 10);
    CHECK(cfg.disk_size_set);
    CHECK(cfg.storage_url == "s3://bucket/path");
    CHECK(cfg.nbd_address == "127.0.0.1:10809");
    CHECK(cfg.control_socket == "/run/portalbd/portalbd.sock");
    CHECK(cfg.flush_interval_ms == 1000);
    CHECK(cfg.segment_bytes == 67108864);
    CHECK(cfg.config_file == path);
    CHECK(validate_config(cfg).ok());
  }

  TEST_CASE("every key is accepted") {
    Config cfg = default_config();
    CHECK(load_error(R"([device]
disk_size_gb = 1073741824
grow = true
[storage]
url = "memory://"
[nbd]
address = "[::1]:10810"
socket = "/tmp/x/ctl.sock"
unix = "/tmp/x/nbd.sock"
export_name = "vol1"
[lsm]
flush_interval_ms = 5
l0_sst_size_bytes = 1048576
write_buffer_bytes = 2097152
upload_concurrency = 3
[cache]
bytes = 0
[daemon]
state_dir = "/srv/pbd"
log_level = "debug"
compression = "zstd"
)",
                     &cfg) == "");
    CHECK(cfg.disk_size_gb == 1073741824);
    CHECK(cfg.grow);
    CHECK(cfg.nbd_unix == "/tmp/x/nbd.sock");
    CHECK(cfg.export_name == "vol1");
    CHECK(cfg.write_buffer_bytes == 2097152);
    CHECK(cfg.upload_concurrency == 3);
    CHECK(cfg.cache_bytes == 0);
    CHECK(cfg.state_dir == "/srv/pbd");
    CHECK(cfg.log_level == "debug");
    CHECK(cfg.compression == "zstd");
    CHECK(validate_config(cfg).ok());
  }

  TEST_CASE("keys absent from the file keep their value") {
    Config cfg = default_config();
    cfg.export_name = "kept";
    CHECK(load_error("[device]\ndisk_size_gb = 2\n", &cfg) == "");
    CHECK(cfg.export_name == "kept");
    CHECK(cfg.nbd_address == "127.0.0.1:10809");
  }

  TEST_CASE("an unknown key is named, with a suggestion") {
    std::string msg = load_error("[lsm]\nflush_intervall_ms = 10\n");
    CHECK(msg.find(": unknown key 'lsm.flush_intervall_ms'") != std::string::npos);
    CHECK(msg.find("did you mean 'lsm.flush_interval_ms'") != std::string::npos);
  }

  TEST_CASE("a key outside any table is unknown") {
    CHECK(load_error("disk_size_gb = 3\n").find("unknown key 'disk_size_gb'") != std::string::npos);
  }

  TEST_CASE("an unknown table is named") {
    std::string msg = load_error("[devcie]\ndisk_size_gb = 3\n");
    CHECK(msg.find("unknown table '[devcie]'") != std::string::npos);
  }

  TEST_CASE("a wrong type names key, value and expected type") {
    std::string msg = load_error("[device]\ndisk_size_gb = \"10\"\n");
    CHECK(msg.find("device.disk_size_gb = \"10\": expected a non-negative integer, got a string") != std::string::npos);
    CHECK(load_error("[device]\ngrow = 1\n").find("device.grow = 1: expected true or false") != std::string::npos);
    CHECK(load_error("[nbd]\naddress = 10809\n").find("nbd.address = 10809: expected a string") != std::string::npos);
  }

  TEST_CASE("size 0, negative and too large are refused") {
    std::string msg = load_error("[device]\ndisk_size_gb = 0\n");
    CHECK(msg.find(": device.disk_size_gb = 0: must be at least 1") != std::string::npos);
    CHECK(load_error("[device]\ndisk_size_gb = -5\n").find("device.disk_size_gb = -5: must not be negative") !=
          std::string::npos);
    CHECK(load_error("[device]\ndisk_size_gb = 1073741825\n").find("must be at most 1073741824") != std::string::npos);
  }

  TEST_CASE("an unsupported storage URL scheme names the scheme and URL") {
    std::string msg = load_error("[storage]\nurl = \"ftp://x\"\n");
    CHECK(msg.find("storage.url = \"ftp://x\": unsupported storage URL scheme 'ftp' in 'ftp://x' "
                   "(expected memory://, file:// or s3://)") != std::string::npos);
    CHECK(load_error("[storage]\nurl = \"bucket\"\n").find("has no scheme") != std::string::npos);
    CHECK(load_error("[storage]\nurl = \"s3://\"\n").find("needs a bucket") != std::string::npos);
  }

  TEST_CASE("a bad NBD address is refused") {
    for (const char* bad : {"localhost", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:port", ":10809", "::1:80"}) {
      CAPTURE(std::string(bad));
      std::string msg = load_error(std::string("[nbd]\naddress = \"") + bad + "\"\n");
      CHECK(msg.find(std::string("nbd.address = \"") + bad + "\": expected host:port") != std::string::npos);
    }
  }

  TEST_CASE("metrics are off by default and served on loopback only") {
    CHECK(default_config(UserEnvironment{}).metrics_address.empty());
    for (const char* good : {"127.0.0.1:9110", "127.1.2.3:1", "[::1]:9110", "localhost:9110"}) {
      CAPTURE(std::string(good));
      Config cfg = default_config(UserEnvironment{});
      CHECK(load_error(std::string("[metrics]\naddress = \"") + good + "\"\n", &cfg) == "");
      CHECK(cfg.metrics_address == good);
    }
    for (const char* bad : {"0.0.0.0:9110", "10.0.0.1:9110", "[::]:9110", "example.com:9110", "128.0.0.1:1"}) {
      CAPTURE(std::string(bad));
      CHECK(load_error(std::string("[metrics]\naddress = \"") + bad + "\"\n").find("loopback only") !=
            std::string::npos);
    }
    CHECK(load_error("[metrics]\naddress = \"127.0.0.1\"\n").find("expected host:port") != std::string::npos);
  }

  TEST_CASE("encryption: a key file or a passphrase file, absolute, not both") {
    Config cfg = default_config(UserEnvironment{});
    CHECK(cfg.encryption_key_file.empty());
    CHECK(cfg.encryption_passphrase_file.empty());
    CHECK(load_error("[encryption]\nkey_file = \"/etc/portalbd/volume.key\"\n", &cfg) == "");
    CHECK(cfg.encryption_key_file == "/etc/portalbd/volume.key");
    CHECK(validate_config(cfg).ok());
    CHECK(load_error("[encryption]\npassphrase_file = \"/etc/portalbd/pass\"\n", &cfg) == "");
    const Status both = validate_config(cfg);
    CHECK(both.is(Status::Code::kInvalidArgument));
    CHECK(both.message().find("both set") != std::string::npos);
    CHECK(load_error("[encryption]\nkey_file = \"volume.key\"\n") != "");  // relative in a file
  }

  TEST_CASE("the NBD resource limits have bounds") {
    CHECK(load_error("[nbd]\nmax_connections = 0\n").find("nbd.max_connections = 0: must be between 1 and 65536") !=
          std::string::npos);
    CHECK(load_error("[nbd]\nmax_write_payload_bytes = 1000\n")
              .find("nbd.max_write_payload_bytes = 1000: must be between 1048576 (1 MiB)") != std::string::npos);
    Config cfg = default_config(UserEnvironment{});
    CHECK(cfg.max_connections == 128);
    CHECK(cfg.max_write_payload_bytes == 256ull << 20);
  }

  TEST_CASE("other bad values") {
    CHECK(load_error("[nbd]\nexport_name = \"a@b\"\n").find("must not contain '@'") != std::string::npos);
    CHECK(load_error("[nbd]\nexport_name = \"\"\n").find("must not be empty") != std::string::npos);
    CHECK(load_error("[daemon]\nlog_level = \"loud\"\n").find("unknown log level") != std::string::npos);
    CHECK(load_error("[daemon]\ncompression = \"gzip\"\n").find("unknown compression") != std::string::npos);
    CHECK(load_error("[daemon]\nstate_dir = \"rel\"\n").find("must be an absolute path") != std::string::npos);
    CHECK(load_error("[lsm]\nflush_interval_ms = 0\n").find("must be between 1 and 3600000") != std::string::npos);
    CHECK(load_error("[lsm]\nl0_sst_size_bytes = 1000\n").find("lsm.l0_sst_size_bytes = 1000") != std::string::npos);
    CHECK(load_error("[lsm]\nupload_concurrency = 17\n")
              .find("lsm.upload_concurrency = 17: must be between 0 (automatic) and 16") != std::string::npos);
    // 0 would let idle clients hold every control connection for ever.
    CHECK(load_error("[daemon]\ncontrol_idle_timeout_ms = 0\n")
              .find("daemon.control_idle_timeout_ms = 0: must be between 100 and 3600000") != std::string::npos);
  }

  TEST_CASE("a syntax error names file, line and column") {
    TempDir dir;
    std::string path = dir.write("bad.toml", "[device]\ndisk_size_gb = = 3\n");
    Config cfg;
    Status st = apply_config_file(path, &cfg);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().rfind(path + ":2:", 0) == 0);
    CHECK(st.message().find("TOML syntax error") != std::string::npos);
  }

  TEST_CASE("a missing file is an IOError naming it") {
    Config cfg;
    Status st = apply_config_file("/nonexistent/portalbd.toml", &cfg);
    CHECK(st.code() == Status::Code::kIOError);
    CHECK(st.message() == "cannot read config file /nonexistent/portalbd.toml: No such file or directory");
  }
}

TEST_SUITE("config.defaults") {
  TEST_CASE("root gets system paths") {
    UserEnvironment env;
    env.uid = 0;
    env.home = "/root";
    env.xdg_runtime_dir = "/run/user/0";
    Config cfg = default_config(env);
    CHECK(cfg.control_socket == "/run/portalbd/portalbd.sock");
    CHECK(cfg.state_dir == "/var/lib/portalbd");
    CHECK(effective_storage_url(cfg) == "file:///var/lib/portalbd/data");
    CHECK(validate_config(cfg).ok());
  }

  TEST_CASE("a user gets XDG paths, or home and /tmp fallbacks") {
    UserEnvironment env;
    env.uid = 1000;
    env.home = "/home/ann";
    env.xdg_runtime_dir = "/run/user/1000";
    env.xdg_data_home = "/home/ann/data";
    Config cfg = default_config(env);
    CHECK(cfg.control_socket == "/run/user/1000/portalbd/portalbd.sock");
    CHECK(cfg.state_dir == "/home/ann/data/portalbd");

    env.xdg_runtime_dir = "";
    env.xdg_data_home = "relative/ignored";
    cfg = default_config(env);
    CHECK(cfg.control_socket == "/tmp/portalbd-1000/portalbd.sock");
    CHECK(cfg.state_dir == "/home/ann/.local/share/portalbd");
  }

  TEST_CASE("the stated defaults") {
    Config cfg = default_config();
    CHECK(cfg.nbd_address == "127.0.0.1:10809");
    CHECK(cfg.export_name == "portalbd");
    CHECK_FALSE(cfg.disk_size_set);
    CHECK(cfg.storage_url.empty());
    CHECK(cfg.segment_bytes == 64ull << 20);
    CHECK(cfg.upload_concurrency == 0);  // automatic
    CHECK(effective_upload_concurrency(cfg, "s3://bucket/prefix") == kRemoteUploadConcurrency);
    CHECK(effective_upload_concurrency(cfg, "file:///srv/portalbd") == 1);
    CHECK(effective_upload_concurrency(cfg, "memory://") == 1);
    cfg.upload_concurrency = 2;
    CHECK(effective_upload_concurrency(cfg, "s3://bucket/prefix") == 2);
    CHECK(cfg.compression == "auto");
    CHECK(effective_compression(cfg, "memory://") == "none");
    CHECK(effective_compression(cfg, "file:///srv/portalbd") == "lz4");
    CHECK(effective_compression(cfg, "s3://bucket/prefix") == "lz4");
    cfg.compression = "zstd";
    CHECK(effective_compression(cfg, "memory://") == "zstd");
    CHECK(validate_config(cfg).ok());
  }

  TEST_CASE("read-ahead: 256 MiB on s3://, 64 MiB on local stores, unless set") {
    Config cfg = default_config();
    CHECK(effective_read_ahead_bytes(cfg, "s3://bucket/prefix") == 256ull << 20);
    CHECK(effective_read_ahead_bytes(cfg, "file:///srv/portalbd") == 64ull << 20);
    CHECK(effective_read_ahead_bytes(cfg, "memory://") == 64ull << 20);
    cfg.read_ahead_bytes = 0;
    cfg.read_ahead_bytes_set = true;
    CHECK(effective_read_ahead_bytes(cfg, "s3://bucket/prefix") == 0);  // off stays off
    cfg.read_ahead_bytes = 32ull << 20;
    CHECK(effective_read_ahead_bytes(cfg, "s3://bucket/prefix") == 32ull << 20);
    CHECK(effective_read_ahead_bytes(cfg, "file:///srv/portalbd") == 32ull << 20);
  }

  TEST_CASE("read-ahead set in a config file counts as set, also at the local stores' value") {
    Config cfg = default_config();
    CHECK(load_error("[cache]\nread_ahead_bytes = 67108864\n", &cfg) == "");
    CHECK(cfg.read_ahead_bytes_set);
    CHECK(effective_read_ahead_bytes(cfg, "s3://bucket/prefix") == 64ull << 20);
  }

  TEST_CASE("the journal: on for file://, off for s3://, never on memory://, unless set") {
    Config cfg = default_config();
    CHECK(effective_journal_enabled(cfg, "file:///srv/portalbd"));
    CHECK(effective_journal_enabled(cfg, effective_storage_url(cfg)));  // the embedded default store
    CHECK_FALSE(effective_journal_enabled(cfg, "s3://bucket/prefix"));
    CHECK_FALSE(effective_journal_enabled(cfg, "memory://"));
    cfg.journal_enabled_set = true;
    cfg.journal_enabled = false;
    CHECK_FALSE(effective_journal_enabled(cfg, "file:///srv/portalbd"));
    cfg.journal_enabled = true;
    CHECK(effective_journal_enabled(cfg, "s3://bucket/prefix"));
    CHECK_FALSE(effective_journal_enabled(cfg, "memory://"));  // nothing outlives the process anyway
  }

  TEST_CASE("journal direct writes: 1 MiB on file://, none on s3://, unless set") {
    Config cfg = default_config();
    CHECK(effective_journal_direct_write_bytes(cfg, "file:///srv/portalbd") == 1ull << 20);
    CHECK(effective_journal_direct_write_bytes(cfg, "s3://bucket/prefix") == 0);
    cfg.journal_direct_write_bytes = 4ull << 20;
    cfg.journal_direct_write_bytes_set = true;
    CHECK(effective_journal_direct_write_bytes(cfg, "s3://bucket/prefix") == 4ull << 20);
    cfg.journal_direct_write_bytes = 0;
    CHECK(effective_journal_direct_write_bytes(cfg, "file:///srv/portalbd") == 0);
  }
}

TEST_SUITE("config.validate") {
  TEST_CASE("cross-field rules") {
    Config cfg = default_config();
    cfg.write_buffer_bytes = cfg.segment_bytes - 1;
    CHECK(validate_config(cfg).message().find("lsm.write_buffer_bytes") != std::string::npos);

    cfg = default_config();
    cfg.nbd_address = "";
    CHECK_FALSE(validate_config(cfg).ok());
    cfg.nbd_unix = "/tmp/nbd.sock";
    CHECK(validate_config(cfg).ok());

    cfg = default_config();
    cfg.disk_size_set = true;
    cfg.disk_size_gb = 0;
    CHECK(validate_config(cfg).message() == "device.disk_size_gb = 0: must be at least 1");
  }

  TEST_CASE("parse_host_port") {
    auto hp = parse_host_port("0.0.0.0:10809");
    REQUIRE(hp.ok());
    CHECK(hp->host == "0.0.0.0");
    CHECK(hp->port == 10809);
    hp = parse_host_port("[::]:1");
    REQUIRE(hp.ok());
    CHECK(hp->host == "::");
    CHECK(hp->port == 1);
    CHECK_FALSE(parse_host_port("[::1]10809").ok());
    CHECK_FALSE(parse_host_port("host:-1").ok());
  }
}

}  // namespace portalbd
