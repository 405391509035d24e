#include "src/store/fault_store.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "src/store/memory_store.h"

using namespace portalbd;

namespace {

std::vector<std::byte> bytes(const std::string& s) {
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

}  // namespace

TEST_CASE("store: FaultStore forwards calls and counts them by op") {
  auto mem = std::make_shared<MemoryStore>();
  FaultStore fs(mem);
  REQUIRE(fs.put("a/1", bytes("one")).ok());
  REQUIRE(fs.put_if_absent("a/2", bytes("two")).ok());
  CHECK(fs.put_if_absent("a/2", bytes("again")).is(Status::Code::kAlreadyExists));
  std::vector<std::byte> out;
  REQUIRE(fs.get("a/1", &out).ok());
  CHECK(out == bytes("one"));
  REQUIRE(fs.get_range("a/2", 1, 5, &out).ok());
  CHECK(out == bytes("wo"));
  auto h = fs.head("a/1");
  REQUIRE(h.ok());
  CHECK(h->size == 3);
  std::vector<ObjectInfo> listed;
  REQUIRE(fs.list("a/", &listed).ok());
  CHECK(listed.size() == 2);
  REQUIRE(fs.remove("a/1").ok());
  CHECK(mem->get("a/1", &out).is(Status::Code::kNotFound));

  CHECK(fs.calls() == 8);
  CHECK(fs.calls(FaultStore::kPut) == 1);
  CHECK(fs.calls(FaultStore::kPutIfAbsent) == 2);
  CHECK(fs.calls(FaultStore::kGet) == 1);
  CHECK(fs.calls(FaultStore::kGetRange) == 1);
  CHECK(fs.calls(FaultStore::kHead) == 1);
  CHECK(fs.calls(FaultStore::kList) == 1);
  CHECK(fs.calls(FaultStore::kRemove) == 1);
  CHECK(fs.injected() == 0);
  CHECK(fs.trace().front() == "put a/1");
  CHECK(fs.url() == "memory://");
  CHECK_FALSE(fs.persistent());
  CHECK(fs.supports_conditional_put());
}

TEST_CASE("store: FaultStore fails exactly the Nth call, with the chosen status, and it has no effect") {
  auto mem = std::make_shared<MemoryStore>();
  FaultStore fs(mem);
  REQUIRE(fs.put("x", bytes("0")).ok());  // call 1, before the plan
  fs.fail_call(2, Status::Corruption("boom"));
  CHECK(fs.put("k1", bytes("1")).ok());  // 1st from now
  Status st = fs.put("k2", bytes("2"));  // 2nd: fails
  CHECK(st.is(Status::Code::kCorruption));
  CHECK(st.message().find("boom") != std::string::npos);
  CHECK(st.message().find("k2") != std::string::npos);
  std::vector<std::byte> out;
  CHECK(mem->get("k2", &out).is(Status::Code::kNotFound));  // never reached the store
  CHECK(fs.put("k3", bytes("3")).ok());                     // later calls go through
  CHECK(fs.put("k2", bytes("2")).ok());                     // retry works
  CHECK(fs.injected() == 1);
  CHECK_FALSE(fs.crashed());

  SUBCASE("a failing head or list returns the status") {
    fs.fail_call(1, Status::IOError("h"));
    CHECK(fs.head("k1").status().is(Status::Code::kIOError));
    fs.fail_call(1, Status::Unavailable("l"));
    std::vector<ObjectInfo> listed;
    CHECK(fs.list("", &listed).is(Status::Code::kUnavailable));
    fs.fail_call(1, Status::OK());  // an OK status means the default IOError
    CHECK(fs.remove("k1").is(Status::Code::kIOError));
    CHECK(mem->get("k1", &out).ok());
  }
}

TEST_CASE("store: FaultStore crash point fails every later call with kUnavailable") {
  auto mem = std::make_shared<MemoryStore>();
  FaultStore fs(mem);
  fs.crash_after(2);
  CHECK(fs.put("a", bytes("a")).ok());
  CHECK(fs.put("b", bytes("b")).ok());
  CHECK_FALSE(fs.crashed());
  for (int i = 0; i < 5; ++i) {
    CHECK(fs.put("c", bytes("c")).is(Status::Code::kUnavailable));
    std::vector<std::byte> out;
    CHECK(fs.get("a", &out).is(Status::Code::kUnavailable));
  }
  CHECK(fs.crashed());
  CHECK(fs.injected() == 10);
  std::vector<std::byte> out;
  CHECK(mem->get("c", &out).is(Status::Code::kNotFound));  // the dead process's PUT never landed
  CHECK(mem->get("b", &out).ok());

  fs.clear_faults();
  CHECK(fs.put("c", bytes("c")).ok());
  CHECK_FALSE(fs.crashed());

  fs.crash_now();
  CHECK(fs.remove("a").is(Status::Code::kUnavailable));
  CHECK(mem->get("a", &out).ok());
}

TEST_CASE("store: FaultStore rules match op and key prefix, optionally a number of times") {
  auto mem = std::make_shared<MemoryStore>();
  FaultStore fs(mem);
  fs.add_rule({1u << FaultStore::kPut, "segments/", Status::IOError("seg down"), -1});
  fs.add_rule({FaultStore::kReads, "roots/", Status::Unavailable("roots flaky"), 2});
  CHECK(fs.put("segments/0001.seg", bytes("s")).is(Status::Code::kIOError));
  CHECK(fs.put("segments/0002.seg", bytes("s")).is(Status::Code::kIOError));
  CHECK(fs.put("roots/0001.json", bytes("r")).ok());       // prefix does not match the put rule
  CHECK(fs.put_if_absent("segments/x", bytes("s")).ok());  // op does not match
  std::vector<std::byte> out;
  CHECK(fs.get("roots/0001.json", &out).is(Status::Code::kUnavailable));
  CHECK(fs.get_range("roots/0001.json", 0, 1, &out).is(Status::Code::kUnavailable));
  CHECK(fs.get("roots/0001.json", &out).ok());  // the rule ran out
  CHECK(fs.injected() == 4);
  fs.clear_faults();
  CHECK(fs.put("segments/0001.seg", bytes("s")).ok());
}

TEST_CASE("store: FaultStore counts concurrent calls exactly") {
  auto mem = std::make_shared<MemoryStore>();
  FaultStore fs(mem);
  fs.crash_after(1000);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, failed{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 400; ++i) {
        if (fs.put("k" + std::to_string(t) + "/" + std::to_string(i), bytes("v")).ok()) {
          ok++;
        } else {
          failed++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(fs.calls() == 1600);
  CHECK(ok == 1000);
  CHECK(failed == 600);
  std::vector<ObjectInfo> listed;
  REQUIRE(mem->list("k", &listed).ok());
  CHECK(listed.size() == 1000);
}
