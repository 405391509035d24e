#include "src/store/counting_store.h"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "src/store/fault_store.h"
#include "src/store/memory_store.h"

using namespace portalbd;

namespace {

std::vector<std::byte> bytes(const std::string& s) {
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

// A store that keeps counters of its own (as S3Store does) and nothing else.
class MeteredStore final : public ObjectStore {
 public:
  Status put(const std::string&, std::span<const std::byte>) override { return Status::NotSupported("put"); }
  Status put_if_absent(const std::string&, std::span<const std::byte>) override { return Status::NotSupported("put"); }
  bool supports_conditional_put() const override { return false; }
  Status get_range(const std::string&, uint64_t, uint64_t, std::vector<std::byte>*) override {
    return Status::NotSupported("get_range");
  }
  Status get(const std::string&, std::vector<std::byte>*) override { return Status::NotSupported("get"); }
  Result<ObjectInfo> head(const std::string&) override { return Status::NotSupported("head"); }
  Status list(const std::string&, std::vector<ObjectInfo>*) override { return Status::NotSupported("list"); }
  Status remove(const std::string&) override { return Status::NotSupported("remove"); }
  std::string url() const override { return "metered://"; }
  bool persistent() const override { return false; }
  std::optional<StoreMetrics> metrics() const override { return StoreMetrics{"metered", {{"requests", 7}}}; }
};

}  // namespace

TEST_SUITE("store.counting") {
  TEST_CASE("counts every request by operation, and the bytes each way") {
    auto mem = std::make_shared<MemoryStore>();
    CountingStore cs(mem);
    CHECK(cs.counts(CountingStore::kVolume).requests() == 0);
    REQUIRE(cs.put("segments/1", bytes("one")).ok());
    REQUIRE(cs.put_if_absent("segments/2", bytes("two!")).ok());
    CHECK(cs.put_if_absent("segments/2", bytes("again")).is(Status::Code::kAlreadyExists));
    REQUIRE(cs.put_shared("segments/3", std::make_shared<const std::vector<std::byte>>(bytes("three"))).ok());
    std::vector<std::byte> out;
    REQUIRE(cs.get("segments/1", &out).ok());
    REQUIRE(cs.get_range("segments/2", 1, 2, &out).ok());
    CHECK(out == bytes("wo"));
    CHECK(cs.get("segments/9", &out).is(Status::Code::kNotFound));  // counted, no bytes
    REQUIRE(cs.head("segments/1").ok());
    std::vector<ObjectInfo> listed;
    REQUIRE(cs.list("segments/", &listed).ok());
    CHECK(listed.size() == 3);
    REQUIRE(cs.remove("segments/1").ok());
    // Forwarded: the inner store holds what went through.
    CHECK(mem->get("segments/1", &out).is(Status::Code::kNotFound));
    REQUIRE(mem->get("segments/3", &out).ok());
    CHECK(out == bytes("three"));

    const StoreRequestCounts c = cs.counts(CountingStore::kVolume);
    CHECK(c.put == 2);  // put and put_shared
    CHECK(c.put_if_absent == 2);
    CHECK(c.get == 2);
    CHECK(c.get_range == 1);
    CHECK(c.head == 1);
    CHECK(c.list == 1);
    CHECK(c.remove == 1);
    CHECK(c.requests() == 10);
    CHECK(c.bytes_out == 3 + 4 + 5 + 5);  // the refused put_if_absent sent its body too
    CHECK(c.bytes_in == 3 + 2);
    CHECK(cs.counts(CountingStore::kLease).requests() == 0);
    CHECK(cs.url() == mem->url());
    CHECK(cs.persistent() == mem->persistent());
  }

  TEST_CASE("times every request and counts failures, but not missing keys or lost conditional puts") {
    auto mem = std::make_shared<MemoryStore>();
    CountingStore cs(mem);
    REQUIRE(cs.put("segments/1", bytes("one")).ok());
    CHECK(cs.put_if_absent("segments/1", bytes("x")).is(Status::Code::kAlreadyExists));
    std::vector<std::byte> out;
    CHECK(cs.get("segments/9", &out).is(Status::Code::kNotFound));
    CHECK_FALSE(cs.head("segments/9").ok());
    for (unsigned op = 0; op < CountingStore::kNumOperations; ++op) {
      CHECK(cs.errors(CountingStore::kVolume, static_cast<CountingStore::Operation>(op)) == 0);
    }
    CHECK(cs.latency(CountingStore::kOpPut).count() == 1);
    CHECK(cs.latency(CountingStore::kOpPutIfAbsent).count() == 1);
    CHECK(cs.latency(CountingStore::kOpGet).count() == 1);
    CHECK(cs.latency(CountingStore::kOpHead).count() == 1);
    CHECK(cs.latency(CountingStore::kOpList).count() == 0);

    // A store that fails everything: each failure counts, by bucket and operation.
    CountingStore failing(std::make_shared<MeteredStore>());
    CHECK_FALSE(failing.put("segments/1", bytes("a")).ok());
    CHECK_FALSE(failing.put("lock/writer.json", bytes("a")).ok());
    CHECK_FALSE(failing.get_range("segments/1", 0, 1, &out).ok());
    CHECK_FALSE(failing.remove("segments/1").ok());
    CHECK(failing.errors(CountingStore::kVolume, CountingStore::kOpPut) == 1);
    CHECK(failing.errors(CountingStore::kLease, CountingStore::kOpPut) == 1);
    CHECK(failing.errors(CountingStore::kVolume, CountingStore::kOpGetRange) == 1);
    CHECK(failing.errors(CountingStore::kVolume, CountingStore::kOpRemove) == 1);
    CHECK(failing.errors(CountingStore::kVolume, CountingStore::kOpGet) == 0);
    CHECK(failing.latency(CountingStore::kOpPut).count() == 2);
  }

  TEST_CASE("keys under lock/ count as the lease's, apart from the volume's") {
    CountingStore cs(std::make_shared<MemoryStore>());
    REQUIRE(cs.put_if_absent("lock/writer.json", bytes("{}")).ok());
    std::vector<std::byte> out;
    REQUIRE(cs.get("lock/writer.json", &out).ok());
    REQUIRE(cs.head("lock/writer.json").ok());
    std::vector<ObjectInfo> listed;
    REQUIRE(cs.list("lock/", &listed).ok());
    REQUIRE(cs.list("", &listed).ok());  // the whole store: the volume's
    REQUIRE(cs.remove("lock/writer.json").ok());
    REQUIRE(cs.put("lockfile", bytes("x")).ok());  // not under lock/
    const StoreRequestCounts lease = cs.counts(CountingStore::kLease);
    CHECK(lease.put_if_absent == 1);
    CHECK(lease.get == 1);
    CHECK(lease.head == 1);
    CHECK(lease.list == 1);
    CHECK(lease.remove == 1);
    CHECK(lease.requests() == 5);
    CHECK(lease.bytes_out == 2);
    CHECK(lease.bytes_in == 2);
    const StoreRequestCounts volume = cs.counts(CountingStore::kVolume);
    CHECK(volume.list == 1);
    CHECK(volume.put == 1);
    CHECK(volume.requests() == 2);
  }

  TEST_CASE("decorators forward the inner store's own metrics, and add none") {
    CHECK_FALSE(CountingStore(std::make_shared<MemoryStore>()).metrics().has_value());
    CountingStore cs(std::make_shared<FaultStore>(std::make_shared<MeteredStore>()));
    const std::optional<StoreMetrics> m = cs.metrics();
    REQUIRE(m.has_value());
    CHECK(m->name == "metered");
    REQUIRE(m->counters.size() == 1);
    CHECK(m->counters[0] == std::pair<std::string, uint64_t>{"requests", 7});
    CHECK(cs.counts(CountingStore::kVolume).requests() == 0);  // asking is not a request
  }

  TEST_CASE("counts from many threads add up") {
    CountingStore cs(std::make_shared<MemoryStore>());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&cs, t] {
        for (int i = 0; i < 250; ++i)
          (void)cs.put("segments/" + std::to_string(t) + "-" + std::to_string(i), bytes("ab"));
      });
    }
    for (auto& th : threads) th.join();
    CHECK(cs.counts(CountingStore::kVolume).put == 1000);
    CHECK(cs.counts(CountingStore::kVolume).bytes_out == 2000);
  }
}
