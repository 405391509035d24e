// S3 deadlines against a store that never answers: a listening socket that
// the kernel completes connections for but nobody reads (what a SIGSTOPped
// s3rver looks like). One attempt ends at the stall timeout, and a call with
// its retries at operation_timeout_ms, not max_attempts stalls.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>

#include "src/store/s3/retry_policy.h"
#include "src/store/s3/s3_store.h"
#include "src/util/fd.h"

using namespace portalbd;
using namespace portalbd::s3;
using namespace std::chrono;

namespace {

// Listens on 127.0.0.1 and never accepts: connects succeed (the backlog),
// requests are never answered.
struct SilentServer {
  UniqueFd fd;
  int port = 0;
  SilentServer() {
    fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.get() >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd.get(), 64) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
};

std::shared_ptr<S3Store> open_store(const SilentServer& server, uint64_t operation_timeout_ms, int max_attempts,
                                    uint32_t stall_timeout_ms = 1000) {
  S3Options o;
  o.bucket = "hang";
  o.endpoint = "http://127.0.0.1:" + std::to_string(server.port);
  o.credentials = {"AKID", "SECRET", ""};
  o.probe_on_open = false;
  o.stall_timeout_ms = stall_timeout_ms;
  o.request_timeout_ms = 30'000;
  o.operation_timeout_ms = operation_timeout_ms;
  o.max_attempts = max_attempts;
  o.backoff_base_ms = 50;
  o.backoff_max_ms = 200;
  auto store = S3Store::Open(o);
  REQUIRE(store.ok());
  return *store;
}

}  // namespace

TEST_SUITE("s3.deadline") {
  TEST_CASE("an attempt's total limit grows with the bytes it moves") {
    CHECK(attempt_timeout_ms(30'000, 0) == 30'000);
    CHECK(attempt_timeout_ms(30'000, 1) == 31'000);
    CHECK(attempt_timeout_ms(30'000, 64ull << 20) == 94'000);
  }

  TEST_CASE("an attempt the store never answers ends at the stall timeout") {
    SilentServer server;
    auto store = open_store(server, 0, 1);
    std::vector<std::byte> data(4096, std::byte{7});
    const auto started = steady_clock::now();
    Status st = store->put("segments/1", data);
    const auto took = duration_cast<milliseconds>(steady_clock::now() - started);
    CHECK(st.is(Status::Code::kUnavailable));
    INFO(st.ToString());
    CHECK(st.message().find("stall_timeout_ms") != std::string::npos);
    CHECK(took >= milliseconds(900));
    CHECK(took < milliseconds(3000));
  }

  TEST_CASE("a call with retries gives up at operation_timeout_ms, whatever max_attempts says") {
    SilentServer server;
    auto store = open_store(server, 2500, 100);
    std::vector<std::byte> out;
    const auto started = steady_clock::now();
    Status st = store->get_range("segments/1", 0, 1 << 20, &out);
    const auto took = duration_cast<milliseconds>(steady_clock::now() - started);
    INFO(st.ToString());
    CHECK(st.is(Status::Code::kUnavailable));
    CHECK(st.message().find("deadline") != std::string::npos);
    CHECK(took >= milliseconds(1500));
    CHECK(took < milliseconds(4000));
  }

  TEST_CASE("the attempt in flight gets only what is left of the call's deadline") {
    SilentServer server;
    auto store = open_store(server, 1500, 1, /*stall_timeout_ms=*/10'000);
    std::vector<std::byte> data(4096, std::byte{1});
    const auto started = steady_clock::now();
    Status st = store->put("segments/2", data);
    const auto took = duration_cast<milliseconds>(steady_clock::now() - started);
    CHECK(st.is(Status::Code::kUnavailable));
    CHECK(took < milliseconds(1500 + 800));  // not the 10 s stall: the call's 1.5 s
  }
}
