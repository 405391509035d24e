// Tests for portalctl, run in-process against a ControlServer that plays
// the daemon: output, --json, socket selection and exit codes.
#include "ctl/portalctl.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ctl/control_server.h"
#include "ctl/exit_codes.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

const json kStatus = json::parse(R"({
  "version": "0.1.0", "export": "portalbd", "size_bytes": 1073741824,
  "storage": "file:///var/lib/portalbd/data", "nbd_address": "127.0.0.1:10809", "nbd_unix": "",
  "control_socket": "/run/portalbd/portalbd.sock", "state_dir": "/var/lib/portalbd",
  "dirty_bytes": 1536, "bytes_stored": 5368709120, "segments": 12, "snapshots": 2, "uptime_s": 3725,
  "clients": [{"peer": "127.0.0.1:53422", "export": "portalbd"},
              {"peer": "unix", "export": "portalbd@a", "connected_unix_ms": 1767755083000}],
  "counters": {"reads": 1234567, "writes": 89, "read_bytes": 4096},
  "gc_backlog_bytes": 0,
  "store_requests": {"put": 3, "put_if_absent": 0, "get": 1, "get_range": 2, "head": 1, "list": 6, "remove": 0,
                     "total": 13, "bytes_out": 2097152, "bytes_in": 4096},
  "lease_requests": {"put": 1234, "put_if_absent": 1, "get": 1235, "get_range": 0, "head": 0, "list": 0,
                     "remove": 0, "total": 2470, "bytes_out": 0, "bytes_in": 0}
})");

// A fake daemon on a temporary socket, recording the last request.
class FakeDaemon {
 public:
  FakeDaemon() {
    char tmpl[] = "/tmp/pbd-ctl-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    server_ = std::make_unique<ControlServer>(dir_ + "/ctl.sock");
    server_->on("status", [](const json&, json* r) {
      *r = kStatus;
      return Status::OK();
    });
    auto record = [this](const char* cmd) {
      return [this, cmd](const json& args, json* r) {
        last_cmd = cmd;
        last_args = args;
        const std::string name = args.value("name", "");
        if (name == "missing") return Status::NotFound("no snapshot named 'missing'");
        if (name == "taken") return Status::AlreadyExists("snapshot 'taken' already exists");
        if (name == "bad@name") return Status::InvalidArgument("snapshot names must not contain '@'");
        // The shapes of daemon/control_handlers.cc.
        auto snapshot = [](const std::string& n, bool is_auto) {
          return json{{"name", n},
                      {"id", "4b1461d3"},
                      {"created_unix_ms", 1767755083000},
                      {"created", "2026-01-07T03:04:43Z"},
                      {"written_bytes", 8192},
                      {"export", "portalbd@" + n},
                      {"auto", is_auto}};
        };
        if (std::string(cmd) == "snapshot.list") {
          (*r)["snapshots"] = json::array({snapshot("before-disaster", false), snapshot("auto-1", true)});
        } else if (std::string(cmd) == "snapshot.restore") {
          *r = {{"restored", name}, {"pre_restore", "auto-restore-1"}, {"attached_clients", "127.0.0.1:5"}};
        } else if (std::string(cmd) == "snapshot.delete") {
          *r = {{"deleted", name}};
        } else if (std::string(cmd) == "snapshot.prune") {
          *r = {{"dry_run", args.value("dry_run", false)}, {"deleted", {"a", "b"}}, {"kept", {"c"}}};
        } else {
          *r = snapshot(name.empty() ? "auto-20260107T030443Z" : name, name.empty());
        }
        return Status::OK();
      };
    };
    for (const char* cmd : {"snapshot.create", "snapshot.list", "snapshot.show", "snapshot.delete", "snapshot.restore",
                            "snapshot.prune"}) {
      server_->on(cmd, record(cmd));
    }
    REQUIRE(server_->start().ok());
  }
  ~FakeDaemon() {
    server_->stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string socket() const { return server_->path(); }

  std::string last_cmd;
  json last_args;

 private:
  std::string dir_;
  std::unique_ptr<ControlServer> server_;
};

struct Run {
  int code;
  std::string out, err;
};

Run run(std::vector<std::string> args, const std::string& socket) {
  PortalctlEnvironment env;
  env.default_socket = socket;
  std::ostringstream out, err;
  int code = run_portalctl(args, env, out, err);
  return {code, out.str(), err.str()};
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// True when `text` has the line "<label>:<spaces><value>", whatever the column width.
bool has_row(const std::string& text, const std::string& label, const std::string& value) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(label + ":", 0) != 0) continue;
    const size_t start = line.find_first_not_of(' ', label.size() + 1);
    if (start != std::string::npos && start > label.size() + 1 && line.substr(start) == value) return true;
  }
  return false;
}

}  // namespace

TEST_SUITE("ctl.portalctl") {
  TEST_CASE("status, human") {
    FakeDaemon d;
    Run r = run({"status"}, d.socket());
    REQUIRE_MESSAGE(r.code == 0, r.err);
    INFO(r.out);
    CHECK(has(r.out, "version:"));
    CHECK(has_row(r.out, "size", "1 GiB (1073741824 bytes)"));
    CHECK(has_row(r.out, "NBD unix socket", "none"));
    CHECK(has_row(r.out, "stored", "5 GiB (5368709120 bytes)"));
    CHECK(has_row(r.out, "segments", "12"));
    CHECK(has_row(r.out, "dirty", "1.5 KiB (1536 bytes)"));
    CHECK(has_row(r.out, "uptime", "1h 2m"));
    CHECK(has(r.out,
              "  2\n  127.0.0.1:53422  export=portalbd\n"
              "  unix             connected=2026-01-07 03:04:43 UTC  export=portalbd@a\n"));
    CHECK(has(r.out, "counters:\n"));
    CHECK(has_row(r.out, "  read bytes", "4 KiB (4096 bytes)"));
    CHECK(has_row(r.out, "  reads", "1,234,567"));
    CHECK(has_row(r.out, "gc backlog bytes", "0 B"));  // a field this portalctl does not know is still shown
    CHECK(r.out.rfind("counters:") > r.out.rfind("gc backlog"));
    // Store requests: the total, then each type in the protocol's order, then bytes.
    CHECK(has_row(r.out, "store requests", "13"));
    CHECK(has(r.out, "\n  put=3  put_if_absent=0  get=1  get_range=2  head=1  list=6  remove=0\n"));
    CHECK(has_row(r.out, "  bytes out", "2 MiB (2097152 bytes)"));
    CHECK(has_row(r.out, "lease requests", "2,470"));
    CHECK(has(r.out, "\n  put=1,234  put_if_absent=1  get=1,235"));
    CHECK(r.out.find("store requests:") < r.out.find("lease requests:"));
    CHECK(r.out.rfind("counters:") > r.out.rfind("lease requests"));
  }

  TEST_CASE("status --json prints the result object as sent") {
    FakeDaemon d;
    Run r = run({"status", "--json"}, d.socket());
    REQUIRE(r.code == 0);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
    CHECK(json::parse(r.out) == kStatus);
    CHECK(json::parse(run({"--json", "status"}, d.socket()).out) == kStatus);
  }

  TEST_CASE("--socket beats $PORTALBD_SOCKET beats the default") {
    FakeDaemon d;
    PortalctlEnvironment env;
    env.default_socket = "/nonexistent/default.sock";
    env.socket_env = d.socket();
    std::ostringstream out, err;
    CHECK(run_portalctl({"status"}, env, out, err) == 0);
    env.socket_env = "/nonexistent/env.sock";
    CHECK(run_portalctl({"--socket", d.socket(), "status"}, env, out, err) == 0);
    CHECK(run_portalctl({"status"}, env, out, err) == kExitUnreachable);
  }

  TEST_CASE("no daemon: exit 3 and one line") {
    Run r = run({"status"}, "/nonexistent/portalbd.sock");
    CHECK(r.code == 3);
    CHECK(r.err ==
          "portalctl: cannot reach portalbd at /nonexistent/portalbd.sock: No such file or directory "
          "(is the daemon running?)\n");
    CHECK(r.out.empty());
  }

  TEST_CASE("snapshot commands send their arguments and render") {
    FakeDaemon d;
    Run r = run({"snapshot", "create", "before-disaster"}, d.socket());
    INFO(r.out);
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(d.last_cmd == "snapshot.create");
    CHECK(d.last_args == json{{"name", "before-disaster"}});
    CHECK(has_row(r.out, "Snapshot", "before-disaster"));
    CHECK(has_row(r.out, "  created", "2026-01-07 03:04:43 UTC"));
    CHECK(has_row(r.out, "  written bytes", "8 KiB (8192 bytes)"));
    CHECK(has_row(r.out, "  export", "portalbd@before-disaster"));
    CHECK_FALSE(has(r.out, "created unix"));  // one creation time, not three

    r = run({"snapshot", "create"}, d.socket());  // no name: the daemon picks one
    CHECK(r.code == 0);
    CHECK(d.last_args == json::object());
    CHECK(has_row(r.out, "Snapshot", "auto-20260107T030443Z"));

    r = run({"snapshot", "list"}, d.socket());
    CHECK(has(r.out, "NAME"));
    CHECK(has(r.out, "before-disaster"));
    CHECK(has(r.out, "NAME             CREATED                  WRITTEN  KIND    EXPORT"));
    CHECK(
        has(r.out, "before-disaster  2026-01-07 03:04:43 UTC  8 KiB    manual  portalbd@before-disaster  4b1461d3\n"));
    CHECK(has(r.out, "auto  "));

    r = run({"snapshot", "restore", "before-disaster"}, d.socket());
    CHECK(has(r.out, "Restored snapshot before-disaster"));
    CHECK(has(r.out, "portalctl snapshot restore auto-restore-1"));
    CHECK(has(r.out, "Warning: clients were attached (127.0.0.1:5)"));
    CHECK(d.last_args == json{{"name", "before-disaster"}});
    run({"snapshot", "restore", "x", "--discard-current"}, d.socket());
    CHECK(d.last_args == json{{"name", "x"}, {"discard_current", true}});

    r = run({"snapshot", "delete", "x"}, d.socket());
    CHECK(r.out == "Deleted snapshot x\n");

    r = run({"snapshot", "prune", "--keep-last", "3", "--keep-daily", "7", "--prefix", "auto-", "--dry-run"},
            d.socket());
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(d.last_args == json{{"keep_last", 3},
                              {"keep_hourly", 0},
                              {"keep_daily", 7},
                              {"keep_weekly", 0},
                              {"prefix", "auto-"},
                              {"dry_run", true}});
    CHECK(has(r.out, "Would delete 2 snapshots (dry run):\n  a\n  b\nWould keep 1\n"));
  }

  TEST_CASE("exit codes for the daemon's errors") {
    FakeDaemon d;
    Run r = run({"snapshot", "show", "missing"}, d.socket());
    CHECK(r.code == kExitNotFound);
    CHECK(r.err == "portalctl: no snapshot named 'missing'\n");
    CHECK(run({"snapshot", "create", "taken"}, d.socket()).code == kExitAlreadyExists);
    CHECK(run({"snapshot", "create", "bad@name"}, d.socket()).code == kExitUsage);
  }

  TEST_CASE("usage errors: exit 2, one line") {
    FakeDaemon d;
    for (std::vector<std::string> args :
         std::vector<std::vector<std::string>>{{"frobnicate"},
                                               {"snapshot"},
                                               {"snapshot", "show"},
                                               {"snapshot", "prune"},
                                               {"snapshot", "prune", "--keep-last", "many"},
                                               {"snapshot", "restore"},
                                               {"status", "--bogus"},
                                               {"snapshot", "prune", "--keep-last", "-1"},
                                               {"snapshot", "prune", "--keep-daily=-2"},
                                               {"snapshot", "create", ""}}) {
      Run r = run(args, d.socket());
      INFO(args.front(), " ", args.back());
      CHECK(r.code == kExitUsage);
      CHECK(r.err.rfind("portalctl: ", 0) == 0);
      CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
      CHECK(d.last_cmd.empty());  // nothing was sent
    }
  }

  TEST_CASE("an unknown command is named, with the closest one") {
    FakeDaemon d;
    Run r = run({"stauts"}, d.socket());
    CHECK(r.code == kExitUsage);
    CHECK(r.err == "portalctl: unknown command 'stauts'; did you mean 'status'? (see portalctl --help)\n");
    r = run({"--json", "snapshot", "craete", "x"}, d.socket());
    CHECK(r.code == kExitUsage);
    CHECK(has(r.err, "unknown command 'snapshot craete'; did you mean 'snapshot create'?"));
    r = run({"--socket", d.socket(), "frobnicate"}, d.socket());
    CHECK(r.code == kExitUsage);
    CHECK(has(r.err, "unknown command 'frobnicate' (commands: "));
    CHECK(has(r.err, "checkpoint"));
  }

  TEST_CASE("--help everywhere, with the exit codes once; --version") {
    for (std::vector<std::string> args : std::vector<std::vector<std::string>>{{"--help"},
                                                                               {"status", "--help"},
                                                                               {"snapshot", "--help"},
                                                                               {"snapshot", "prune", "--help"},
                                                                               {"snapshot", "create", "--help"},
                                                                               {"gc", "--help"}}) {
      Run r = run(args, "/x.sock");
      CHECK(r.code == 0);
      CHECK(has(r.out, "4  no such snapshot"));
      size_t blocks = 0;
      for (size_t at = r.out.find("Exit status"); at != std::string::npos; at = r.out.find("Exit status", at + 1)) {
        ++blocks;
      }
      CHECK(blocks == 1);
    }
    Run r = run({"--version"}, "/x.sock");
    CHECK(r.out == "portalctl 0.1.0\n");
  }
}

}  // namespace portalbd::ctl
