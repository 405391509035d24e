// Tests for the control socket: server, client and wire format together,
// over real unix sockets in a temporary directory.
#include "ctl/control_server.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ctl/control_client.h"
#include "ctl/control_protocol.h"
#include "ctl/line_io.h"
#include "ctl/unix_socket.h"

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

// A short-named temporary directory (socket paths must fit in 107 bytes).
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/pbd-ctl-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A server with an "echo" command that returns its arguments.
struct EchoServer {
  TempDir dir;
  ControlServer server{dir.file("ctl.sock")};
  EchoServer() {
    server.on("echo", [](const json& args, json* result) {
      *result = args;
      return Status::OK();
    });
  }
};

// A raw connection for sending arbitrary bytes.
struct RawClient {
  UniqueFd fd;
  std::unique_ptr<LineReader> reader;
  explicit RawClient(const std::string& path) {
    int err = 0;
    fd = connect_unix(path, &err);
    REQUIRE(fd.get() >= 0);
    reader = std::make_unique<LineReader>(fd.get(), kMaxResponseBytes);
  }
  json ask(const std::string& bytes) {
    REQUIRE(send_with_deadline(fd.get(), bytes, deadline_after_ms(5000)).ok());
    std::string line;
    REQUIRE(reader->next(&line, deadline_after_ms(5000)) == LineReader::Outcome::kLine);
    return json::parse(line);
  }
};

}  // namespace

TEST_SUITE("ctl.server") {
  TEST_CASE("round trip through a handler") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    CallFailure failure;
    auto r = call(s.server.path(), "echo", json{{"name", "snap1"}, {"n", 3}}, 5000, &failure);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(failure == CallFailure::kNone);
    CHECK((*r)["name"] == "snap1");
    CHECK((*r)["n"] == 3);
    auto ping = call(s.server.path(), "ping", nullptr, 5000);
    REQUIRE(ping.ok());
    CHECK((*ping)["protocol"] == 1);
  }

  TEST_CASE("the socket gets its mode, and its parent directory is created") {
    TempDir dir;
    ControlServer server(dir.file("sub/dir/ctl.sock"), {.mode = 0600});
    // The daemon runs with umask 077; the directory must still let a socket
    // group search it.
    const mode_t old_umask = ::umask(077);
    Status started = server.start();
    ::umask(old_umask);
    REQUIRE_MESSAGE(started.ok(), started.ToString());
    struct stat st;
    REQUIRE(::stat(server.path().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat(dir.file("sub/dir").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0755);
  }

  TEST_CASE("an unknown command is InvalidArgument naming it") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    CallFailure failure;
    auto r = call(s.server.path(), "nope", json::object(), 5000, &failure);
    REQUIRE_FALSE(r.ok());
    CHECK(failure == CallFailure::kDaemon);
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK(r.status().message().find("unknown command 'nope'") == 0);
  }

  TEST_CASE("a handler's error code and message reach the client") {
    EchoServer s;
    s.server.on("missing", [](const json&, json*) { return Status::NotFound("no snapshot 'x'"); });
    s.server.on("taken", [](const json&, json*) { return Status::AlreadyExists("snapshot 'x' exists"); });
    REQUIRE(s.server.start().ok());
    auto r = call(s.server.path(), "missing", json::object(), 5000);
    CHECK(r.status().code() == Status::Code::kNotFound);
    CHECK(r.status().message() == "no snapshot 'x'");
    r = call(s.server.path(), "taken", json::object(), 5000);
    CHECK(r.status().code() == Status::Code::kAlreadyExists);
  }

  TEST_CASE("exceptions in handlers become errors and the server keeps serving") {
    EchoServer s;
    s.server.on("throws", [](const json&, json*) -> Status { throw std::runtime_error("boom"); });
    s.server.on("typed", [](const json& args, json* result) {
      (*result)["name"] = args.at("name").get<std::string>();
      return Status::OK();
    });
    REQUIRE(s.server.start().ok());
    auto r = call(s.server.path(), "throws", json::object(), 5000);
    CHECK(r.status().code() == Status::Code::kIOError);
    CHECK(r.status().message().find("boom") != std::string::npos);
    r = call(s.server.path(), "typed", json{{"name", 7}}, 5000);
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK(r.status().message().find("bad arguments for 'typed'") == 0);
    CHECK(call(s.server.path(), "echo", json::object(), 5000).ok());
  }

  TEST_CASE("malformed JSON is answered and the connection kept") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    RawClient c(s.server.path());
    json bad = c.ask("{not json\n");
    CHECK(bad["v"] == 1);
    CHECK(bad["ok"] == false);
    CHECK(bad["error"]["code"] == "InvalidArgument");
    CHECK(bad["error"]["message"].get<std::string>().find("malformed request") == 0);
    CHECK(c.ask("[1,2]\n")["ok"] == false);
    CHECK(c.ask("{\"cmd\":\"echo\"}\n")["error"]["message"].get<std::string>().find("\"v\"") != std::string::npos);
    CHECK(c.ask("{\"v\":2,\"cmd\":\"echo\"}\n")["error"]["code"] == "NotSupported");
    json good = c.ask("{\"v\":1,\"cmd\":\"echo\",\"args\":{\"a\":1}}\n");
    CHECK(good["ok"] == true);
    CHECK(good["result"]["a"] == 1);
  }

  TEST_CASE("many requests on one connection, in order; args may be omitted") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    RawClient c(s.server.path());
    std::string batch;
    for (int i = 0; i < 50; ++i) batch += encode_request("echo", json{{"i", i}});
    REQUIRE(send_with_deadline(c.fd.get(), batch).ok());
    for (int i = 0; i < 50; ++i) {
      std::string line;
      REQUIRE(c.reader->next(&line, deadline_after_ms(5000)) == LineReader::Outcome::kLine);
      CHECK(json::parse(line)["result"]["i"] == i);
    }
    CHECK(c.ask("{\"v\":1,\"cmd\":\"ping\"}\n")["ok"] == true);
  }

  TEST_CASE("a request line over 1 MiB is refused and the connection closed") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    RawClient c(s.server.path());
    std::string huge = "{\"v\":1,\"cmd\":\"echo\",\"args\":{\"x\":\"" + std::string(kMaxRequestBytes, 'a') + "\"}}\n";
    // The server may stop reading before we finish writing.
    (void)send_with_deadline(c.fd.get(), huge, deadline_after_ms(5000));
    std::string line;
    REQUIRE(c.reader->next(&line, deadline_after_ms(5000)) == LineReader::Outcome::kLine);
    json err = json::parse(line);
    CHECK(err["ok"] == false);
    CHECK(err["error"]["message"].get<std::string>().find("longer than 1048576 bytes") != std::string::npos);
    auto next = c.reader->next(&line, deadline_after_ms(5000));
    CHECK((next == LineReader::Outcome::kEof || next == LineReader::Outcome::kError));
  }

  TEST_CASE("concurrent clients") {
    EchoServer s;
    std::atomic<int> served{0};
    s.server.on("count", [&](const json& args, json* result) {
      served.fetch_add(1);
      (*result)["id"] = args["id"];
      return Status::OK();
    });
    REQUIRE(s.server.start().ok());
    constexpr int kThreads = 8, kCalls = 25;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kCalls; ++i) {
          auto r = call(s.server.path(), "count", json{{"id", t * 1000 + i}}, 10000);
          if (!r.ok() || (*r)["id"] != t * 1000 + i) failures.fetch_add(1);
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures.load() == 0);
    CHECK(served.load() == kThreads * kCalls);
  }

  TEST_CASE("a slow handler does not block other clients") {
    EchoServer s;
    s.server.on("slow", [](const json&, json*) {
      std::this_thread::sleep_for(std::chrono::milliseconds(600));
      return Status::OK();
    });
    REQUIRE(s.server.start().ok());
    std::thread slow([&] { (void)call(s.server.path(), "slow", json::object(), 10000); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto begin = std::chrono::steady_clock::now();
    CHECK(call(s.server.path(), "echo", json::object(), 5000).ok());
    CHECK(std::chrono::steady_clock::now() - begin < std::chrono::milliseconds(400));
    slow.join();
  }

  TEST_CASE("a stale socket file is removed") {
    TempDir dir;
    const std::string path = dir.file("ctl.sock");
    {
      // A socket bound and closed without unlink: what a killed daemon leaves.
      UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
      sockaddr_un addr;
      REQUIRE(make_unix_address(path, &addr).ok());
      REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    REQUIRE(std::filesystem::exists(path));
    ControlServer server(path);
    Status st = server.start();
    REQUIRE_MESSAGE(st.ok(), st.ToString());
    CHECK(call(path, "ping", nullptr, 5000).ok());
  }

  TEST_CASE("a live server's socket is not taken over") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    ControlServer second(s.server.path());
    Status st = second.start();
    CHECK(st.code() == Status::Code::kAlreadyExists);
    CHECK(st.message() == "control socket " + s.server.path() + " is in use by another portalbd");
    second.stop();
    CHECK(call(s.server.path(), "echo", json::object(), 5000).ok());  // the first still works
  }

  TEST_CASE("a regular file at the socket path is left alone") {
    TempDir dir;
    const std::string path = dir.file("ctl.sock");
    std::ofstream(path) << "keep me";
    ControlServer server(path);
    Status st = server.start();
    CHECK_FALSE(st.ok());
    CHECK(st.message().find("is not a socket") != std::string::npos);
    CHECK(std::filesystem::is_regular_file(path));
  }

  TEST_CASE("stop closes clients, removes the socket, and is idempotent") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    RawClient idle(s.server.path());
    CHECK(idle.ask(encode_request("ping", nullptr))["ok"] == true);
    s.server.stop();
    CHECK_FALSE(std::filesystem::exists(s.server.path()));
    std::string line;
    auto outcome = idle.reader->next(&line, deadline_after_ms(5000));
    CHECK((outcome == LineReader::Outcome::kEof || outcome == LineReader::Outcome::kError));
    s.server.stop();
    // It can be started again.
    REQUIRE(s.server.start().ok());
    CHECK(call(s.server.path(), "echo", json::object(), 5000).ok());
  }

  TEST_CASE("deeply nested JSON is refused and the server keeps serving") {
    EchoServer s;
    REQUIRE(s.server.start().ok());
    RawClient c(s.server.path());
    // Unbalanced, as a hostile client sends it.
    json err = c.ask(std::string(100000, '[') + "\n");
    CHECK(err["ok"] == false);
    CHECK(err["error"]["code"] == "InvalidArgument");
    CHECK(err["error"]["message"] == "malformed request (nested deeper than 64 levels)");
    // Balanced and inside args, where parsing would succeed and copying the
    // value would recurse 100000 deep.
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    err = c.ask("{\"v\":1,\"cmd\":\"echo\",\"args\":{\"x\":" + deep + "}}\n");
    CHECK(err["error"]["message"] == "malformed request (nested deeper than 64 levels)");
    // The limit itself is accepted: the envelope and args are 2 levels.
    const std::string at_limit = std::string(kMaxJsonDepth - 2, '[') + std::string(kMaxJsonDepth - 2, ']');
    json ok = c.ask("{\"v\":1,\"cmd\":\"echo\",\"args\":{\"x\":" + at_limit + "}}\n");
    CHECK(ok["ok"] == true);
    CHECK(call(s.server.path(), "ping", nullptr, 5000).ok());
  }

  TEST_CASE("an idle connection is told why and closed; a partial line does not keep it") {
    TempDir dir;
    ControlServer server(dir.file("ctl.sock"), {.idle_timeout_ms = 200});
    REQUIRE(server.start().ok());
    for (const std::string sent : {"", "\n\n{\"v\":1,\"cmd\":"}) {
      CAPTURE(sent);
      RawClient c(server.path());
      const auto begin = std::chrono::steady_clock::now();
      REQUIRE(send_with_deadline(c.fd.get(), sent, deadline_after_ms(1000)).ok());
      std::string line;
      REQUIRE(c.reader->next(&line, deadline_after_ms(5000)) == LineReader::Outcome::kLine);
      CHECK(std::chrono::steady_clock::now() - begin >= std::chrono::milliseconds(150));
      json err = json::parse(line);
      CHECK(err["error"]["code"] == "Unavailable");
      CHECK(err["error"]["message"] == "no complete request within 200 ms; closing the idle connection");
      auto next = c.reader->next(&line, deadline_after_ms(5000));
      CHECK((next == LineReader::Outcome::kEof || next == LineReader::Outcome::kError));
    }
  }

  TEST_CASE("a command running longer than the idle timeout keeps its connection") {
    TempDir dir;
    ControlServer server(dir.file("ctl.sock"), {.idle_timeout_ms = 200});
    server.on("slow", [](const json&, json* result) {
      std::this_thread::sleep_for(std::chrono::milliseconds(700));
      (*result)["done"] = true;
      return Status::OK();
    });
    REQUIRE(server.start().ok());
    RawClient c(server.path());
    CHECK(c.ask(encode_request("slow", nullptr))["result"]["done"] == true);
    // The idle clock restarts at the answer: a prompt next request is served.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(c.ask(encode_request("ping", nullptr))["ok"] == true);
  }

  TEST_CASE("at the connection limit, clients are told the daemon is busy until idle ones time out") {
    TempDir dir;
    ControlServer server(dir.file("ctl.sock"), {.max_connections = 2, .idle_timeout_ms = 1000});
    REQUIRE(server.start().ok());
    std::vector<std::unique_ptr<RawClient>> idle;
    for (int i = 0; i < 2; ++i) {
      idle.push_back(std::make_unique<RawClient>(server.path()));
      // Served, so it holds a slot (and restarts its idle clock).
      REQUIRE(idle.back()->ask(encode_request("ping", nullptr))["ok"] == true);
    }
    const auto full_since = std::chrono::steady_clock::now();
    // Whether our request goes out before the daemon closes or not, the
    // answer is Busy, never "cannot reach".
    for (int i = 0; i < 20; ++i) {
      CallFailure failure;
      auto r = call(server.path(), "ping", nullptr, 5000, &failure);
      if (std::chrono::steady_clock::now() - full_since > std::chrono::milliseconds(500)) break;
      REQUIRE_FALSE(r.ok());
      CHECK(failure == CallFailure::kDaemon);
      CHECK(r.status().code() == Status::Code::kBusy);
      CHECK(r.status().message().find("portalbd is busy: all 2 control connections are in use") == 0);
    }
    // The idle ones are closed after their timeout and the slots come back.
    bool served = false;
    for (int i = 0; i < 100 && !served; ++i) {
      served = call(server.path(), "ping", nullptr, 5000).ok();
      if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(served);
    CHECK(std::chrono::steady_clock::now() - full_since < std::chrono::seconds(4));
  }

  TEST_CASE("a path too long for a unix socket is refused") {
    ControlServer server("/tmp/" + std::string(200, 'x'));
    Status st = server.start();
    CHECK(st.code() == Status::Code::kInvalidArgument);
    CHECK(st.message().find("limit is 107") != std::string::npos);
  }
}

TEST_SUITE("ctl.client") {
  TEST_CASE("no daemon: Unavailable with a hint") {
    TempDir dir;
    const std::string path = dir.file("none.sock");
    CallFailure failure;
    auto r = call(path, "status", json::object(), 1000, &failure);
    REQUIRE_FALSE(r.ok());
    CHECK(failure == CallFailure::kUnreachable);
    CHECK(r.status().code() == Status::Code::kUnavailable);
    CHECK(r.status().message() ==
          "cannot reach portalbd at " + path + ": No such file or directory (is the daemon running?)");
  }

  TEST_CASE("a socket nobody listens on: connection refused") {
    TempDir dir;
    const std::string path = dir.file("dead.sock");
    {
      UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
      sockaddr_un addr;
      REQUIRE(make_unix_address(path, &addr).ok());
      REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    CallFailure failure;
    auto r = call(path, "status", json::object(), 1000, &failure);
    CHECK(failure == CallFailure::kUnreachable);
    CHECK(r.status().message().find("Connection refused (is the daemon running?)") != std::string::npos);
  }

  TEST_CASE("a daemon that does not answer in time") {
    EchoServer s;
    s.server.on("slow", [](const json&, json*) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      return Status::OK();
    });
    REQUIRE(s.server.start().ok());
    CallFailure failure;
    auto r = call(s.server.path(), "slow", json::object(), 100, &failure);
    CHECK(failure == CallFailure::kTimeout);
    CHECK(r.status().code() == Status::Code::kUnavailable);
    CHECK(r.status().message().find("did not answer 'slow' within 100 ms") != std::string::npos);
  }
}

TEST_SUITE("ctl.protocol") {
  TEST_CASE("nesting depth counts brackets outside strings only") {
    CHECK(json_nesting_depth("", 64) == 0);
    CHECK(json_nesting_depth("1", 64) == 0);
    CHECK(json_nesting_depth("{\"a\":[1,{\"b\":[]}]}", 64) == 4);
    CHECK(json_nesting_depth("[[],[],[[]]]", 64) == 3);
    CHECK(json_nesting_depth("{\"a\":\"[[[[{{{{\"}", 64) == 1);
    CHECK(json_nesting_depth("{\"a\":\"\\\"[[[[\"}", 64) == 1);  // an escaped quote does not end the string
    CHECK(json_nesting_depth("{\"a\":\"\\\\\",\"b\":[[]]}", 64) ==
          3);  // an escaped backslash does not escape the quote
    CHECK(json_nesting_depth("]]]][", 64) == 1);
    CHECK(json_nesting_depth(std::string(1000000, '['), 64) == 65);  // stops counting past the limit
  }

  TEST_CASE("a response nested too deep is refused") {
    json result;
    Status answer;
    const std::string deep =
        "{\"v\":1,\"ok\":true,\"result\":{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}}";
    Status st = parse_response(deep, &result, &answer);
    CHECK(st.code() == Status::Code::kCorruption);
    CHECK(st.message() == "malformed response (nested deeper than 64 levels)");
  }

  TEST_CASE("every status code name maps back") {
    for (int i = 1; i <= static_cast<int>(Status::Code::kCancelled); ++i) {
      auto code = static_cast<Status::Code>(i);
      CHECK(status_code_from_name(Status::CodeName(code)) == code);
    }
    CHECK(status_code_from_name("SomethingNew") == Status::Code::kIOError);
  }

  TEST_CASE("encode and parse") {
    std::string cmd;
    json args;
    REQUIRE(parse_request(encode_request("snapshot.create", json{{"name", "a"}}), &cmd, &args).ok());
    CHECK(cmd == "snapshot.create");
    CHECK(args["name"] == "a");
    REQUIRE(parse_request("{\"v\":1,\"cmd\":\"status\",\"args\":null}", &cmd, &args).ok());
    CHECK(args == json::object());
    CHECK_FALSE(parse_request("{\"v\":1,\"cmd\":\"status\",\"args\":[1]}", &cmd, &args).ok());
    CHECK_FALSE(parse_request("{\"v\":1,\"cmd\":\"\"}", &cmd, &args).ok());

    json result;
    Status answer;
    REQUIRE(parse_response(encode_ok(json{{"x", 1}}), &result, &answer).ok());
    CHECK(answer.ok());
    CHECK(result["x"] == 1);
    REQUIRE(parse_response(encode_error(Status::Corruption("bad frame")), &result, &answer).ok());
    CHECK(answer.code() == Status::Code::kCorruption);
    CHECK(answer.message() == "bad frame");
    CHECK(encode_error(Status::NotFound("x")) ==
          "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"NotFound\",\"message\":\"x\"}}\n");
    CHECK_FALSE(parse_response("{\"v\":1}", &result, &answer).ok());
    CHECK_FALSE(parse_response("{\"v\":1,\"ok\":false,\"error\":{\"code\":\"OK\"}}", &result, &answer).ok());
    CHECK_FALSE(parse_response("nonsense", &result, &answer).ok());
  }
}

}  // namespace portalbd::ctl
