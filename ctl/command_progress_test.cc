// Long control commands (issue 24): answers that are ready after the answer
// timeout, progress lines and heartbeats, and clients that go away while a
// command runs. Real unix sockets in a temporary directory.
#include "ctl/command_progress.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ctl/control_client.h"
#include "ctl/control_protocol.h"
#include "ctl/control_server.h"
#include "ctl/line_io.h"
#include "ctl/unix_socket.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

class SocketDir {
 public:
  SocketDir() {
    char tmpl[] = "/tmp/pbd-prog-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path_ = tmpl;
  }
  ~SocketDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string sock() const { return path_ + "/ctl.sock"; }

 private:
  std::string path_;
};

}  // namespace

TEST_SUITE("ctl.progress") {
  TEST_CASE("an answer ready after the answer timeout is still sent (the deadline starts at the answer)") {
    SocketDir dir;
    ControlServer server(dir.sock(), {.answer_timeout_ms = 100});
    server.on("slow", [](const json&, json* result) {
      std::this_thread::sleep_for(milliseconds(400));
      (*result)["done"] = true;
      return Status::OK();
    });
    REQUIRE(server.start().ok());
    auto r = call(server.path(), "slow", nullptr, 5000);
    REQUIRE(r.ok());
    CHECK((*r)["done"] == true);
  }

  TEST_CASE("with progress, a command longer than the client's timeout answers; notes arrive in order") {
    SocketDir dir;
    ControlServer server(dir.sock(), {.heartbeat_ms = 50});
    server.on_with_progress("long", [](const json&, json* result, Progress& progress) {
      for (int i = 1; i <= 3; ++i) {
        std::this_thread::sleep_for(milliseconds(200));
        progress.note("step " + std::to_string(i));
      }
      std::this_thread::sleep_for(milliseconds(200));
      (*result)["steps"] = 3;
      return Status::OK();
    });
    REQUIRE(server.start().ok());
    std::vector<std::string> notes;
    int heartbeats = 0;
    auto r = call(server.path(), "long", nullptr, 150, nullptr, [&](const json& p) {
      CHECK(p.contains("elapsed_ms"));
      if (p.contains("message")) {
        notes.push_back(p["message"].get<std::string>());
      } else {
        ++heartbeats;
      }
    });
    REQUIRE(r.ok());
    CHECK((*r)["steps"] == 3);
    CHECK(notes == std::vector<std::string>{"step 1", "step 2", "step 3"});
    CHECK(heartbeats >= 4);  // ~800 ms at one per 50 ms of silence, with room for a slow machine

    // Without progress the same timeout still bounds the whole call.
    CallFailure failure;
    auto quiet = call(server.path(), "long", nullptr, 150, &failure);
    CHECK(failure == CallFailure::kTimeout);
  }

  TEST_CASE("a client that asked for no progress gets exactly one line") {
    SocketDir dir;
    ControlServer server(dir.sock(), {.heartbeat_ms = 20});
    server.on_with_progress("noisy", [](const json&, json*, Progress& progress) {
      for (int i = 0; i < 5; ++i) {
        progress.note("dropped");
        std::this_thread::sleep_for(milliseconds(30));
      }
      return Status::OK();
    });
    REQUIRE(server.start().ok());
    int err = 0;
    UniqueFd fd = connect_unix(server.path(), &err);
    REQUIRE(fd);
    REQUIRE(send_with_deadline(fd.get(), encode_request("noisy", nullptr), deadline_after_ms(1000)).ok());
    LineReader reader(fd.get(), kMaxResponseBytes);
    std::string line;
    REQUIRE(reader.next(&line, deadline_after_ms(5000)) == LineReader::Outcome::kLine);
    CHECK(json::parse(line)["ok"] == true);
    // Nothing else follows within a few heartbeat periods.
    CHECK(reader.next(&line, deadline_after_ms(150)) == LineReader::Outcome::kTimeout);
  }

  TEST_CASE("a client that goes away does not cancel the command, and the server keeps serving") {
    SocketDir dir;
    ControlServer server(dir.sock(), {.heartbeat_ms = 20});
    std::atomic<int> finished{0};
    server.on_with_progress("long", [&](const json&, json* result, Progress& progress) {
      for (int i = 0; i < 20; ++i) {
        progress.note("still going " + std::to_string(i));
        std::this_thread::sleep_for(milliseconds(25));
      }
      (*result)["done"] = true;
      finished.fetch_add(1);
      return Status::OK();
    });
    REQUIRE(server.start().ok());
    {
      int err = 0;
      UniqueFd fd = connect_unix(server.path(), &err);
      REQUIRE(fd);
      REQUIRE(send_with_deadline(fd.get(), encode_request("long", nullptr, true), deadline_after_ms(1000)).ok());
      LineReader reader(fd.get(), kMaxResponseBytes);
      std::string line;
      REQUIRE(reader.next(&line, deadline_after_ms(5000)) == LineReader::Outcome::kLine);
      json progress;
      CHECK(parse_progress(line, &progress));
    }  // closed mid-command
    for (int i = 0; i < 200 && finished.load() == 0; ++i) std::this_thread::sleep_for(milliseconds(10));
    CHECK(finished.load() == 1);
    CHECK(call(server.path(), "ping", nullptr, 2000).ok());
    server.stop();
  }
}

TEST_SUITE("ctl.protocol") {
  TEST_CASE("progress requests and lines") {
    std::string cmd;
    json args;
    bool want = true;
    REQUIRE(parse_request(encode_request("gc", json{{"wait", true}}), &cmd, &args, &want).ok());
    CHECK_FALSE(want);
    REQUIRE(parse_request(encode_request("gc", json{{"wait", true}}, true), &cmd, &args, &want).ok());
    CHECK(want);
    CHECK(args["wait"] == true);
    CHECK(parse_request("{\"v\":1,\"cmd\":\"gc\",\"progress\":1}", &cmd, &args, &want).code() ==
          Status::Code::kInvalidArgument);

    json p;
    CHECK(parse_progress(encode_progress(json{{"elapsed_ms", 5}, {"message", "hi"}}), &p));
    CHECK(p["message"] == "hi");
    CHECK_FALSE(parse_progress(encode_ok(json{{"progress", json::object()}}), &p));  // an answer, not progress
    CHECK_FALSE(parse_progress("{\"v\":2,\"progress\":{}}", &p));
    CHECK_FALSE(parse_progress("not json \"progress\"", &p));
  }
}

}  // namespace portalbd::ctl
