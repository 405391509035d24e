// Storage outages (VolumeOptions::flush_timeout_ms): writes keep being
// answered until the write buffer is full, FLUSH waits out an outage shorter
// than the timeout and fails with the storage error after it, and nothing
// answered is lost — it uploads once storage is back, and a volume rebuilt
// from storage alone holds it.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "src/engine/volume.h"
#include "src/store/fault_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace std::chrono;

namespace {

using portalbd::testing::TempDir;

struct OutageHarness {
  TempDir dir;
  std::shared_ptr<MemoryStore> mem = std::make_shared<MemoryStore>();
  std::shared_ptr<FaultStore> faults = std::make_shared<FaultStore>(mem);
  std::shared_ptr<Volume> vol;

  explicit OutageHarness(uint64_t flush_timeout_ms) {
    VolumeOptions o;
    o.size_bytes = 16ull << 20;
    o.segment_bytes = 256 << 10;
    o.write_buffer_bytes = 1 << 20;
    o.flush_interval_ms = 0;
    o.flush_timeout_ms = flush_timeout_ms;
    o.index_path = dir.path + "/index.sqlite";
    auto v = Volume::Open(faults, o);
    REQUIRE(v.ok());
    vol = *v;
  }

  // Every upload (PUT) fails with `st` until storage_back().
  void storage_down(Status st = Status::Unavailable("connection refused (injected outage)")) {
    FaultStore::Rule rule;
    rule.ops = FaultStore::kWrites;
    rule.status = std::move(st);
    faults->add_rule(rule);
  }
  void storage_back() { faults->clear_faults(); }

  // The volume as a fresh daemon would see it: closed, then rebuilt from the
  // objects alone into a new index.
  std::shared_ptr<Volume> reopen_from_storage() {
    REQUIRE(vol->close().ok());
    vol.reset();
    VolumeOptions o;
    o.flush_interval_ms = 0;
    o.index_path = dir.path + "/rebuilt.sqlite";
    auto v = Volume::Open(mem, o);
    REQUIRE(v.ok());
    return *v;
  }
};

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(seed + i * 31 + (i >> 9)));
  return v;
}

void check_reads(Volume& v, uint64_t offset, const std::vector<std::byte>& want) {
  std::vector<std::byte> got(want.size());
  REQUIRE(v.read(offset, got).ok());
  CHECK(std::memcmp(got.data(), want.data(), want.size()) == 0);
}

}  // namespace

TEST_CASE("outage: a FLUSH waits out an outage shorter than flush_timeout_ms") {
  OutageHarness h(10'000);
  const auto data = pattern(192 << 10, 7);
  h.storage_down();
  REQUIRE(h.vol->write(1 << 20, data, false).ok());  // answered from the buffer

  Status flushed = Status::IOError("not run");
  const auto started = steady_clock::now();
  std::thread flusher([&] { flushed = h.vol->flush(); });
  std::this_thread::sleep_for(milliseconds(400));
  // Mid-outage: status says storage is failing, and why.
  VolumeStats mid = h.vol->stats();
  CHECK(mid.storage_failing_since_unix_ms != 0);
  CHECK(mid.last_storage_error.find("injected outage") != std::string::npos);
  CHECK(mid.dirty_bytes >= data.size());
  h.storage_back();
  flusher.join();
  CHECK(flushed.ok());
  CHECK(steady_clock::now() - started >= milliseconds(400));
  VolumeStats after = h.vol->stats();
  CHECK(after.storage_failing_since_unix_ms == 0);
  CHECK(after.last_storage_error.empty());
  CHECK(after.dirty_bytes == 0);

  auto rebuilt = h.reopen_from_storage();
  check_reads(*rebuilt, 1 << 20, data);
}

TEST_CASE("outage: FLUSH fails after flush_timeout_ms, keeps the data, and the next FLUSH uploads it") {
  OutageHarness h(300);
  const auto data = pattern(64 << 10, 3);
  h.storage_down();
  REQUIRE(h.vol->write(0, data, false).ok());
  const auto started = steady_clock::now();
  Status st = h.vol->flush();
  const auto waited = steady_clock::now() - started;
  CHECK(st.is(Status::Code::kUnavailable));
  CHECK(st.message().find("flush_timeout_ms") != std::string::npos);
  CHECK(waited >= milliseconds(300));
  CHECK(waited < seconds(10));
  check_reads(*h.vol, 0, data);  // still served from the buffer

  h.storage_back();
  REQUIRE(h.vol->flush().ok());
  auto rebuilt = h.reopen_from_storage();
  check_reads(*rebuilt, 0, data);
}

TEST_CASE("outage: a full write buffer holds writers back, then fails them; answered writes survive") {
  OutageHarness h(400);
  h.storage_down();
  // 256 KiB writes into a 1 MiB buffer: a few are answered, then one waits
  // and gives up with the storage error.
  std::vector<std::vector<std::byte>> answered;
  Status last;
  const auto started = steady_clock::now();
  for (int i = 0; i < 16; ++i) {
    auto data = pattern(256 << 10, static_cast<uint8_t>(i));
    last = h.vol->write(uint64_t(i) * (256 << 10), data, false);
    if (!last.ok()) break;
    answered.push_back(std::move(data));
  }
  CHECK(answered.size() >= 3);
  CHECK(answered.size() < 16);
  CHECK(last.is(Status::Code::kUnavailable));
  CHECK(last.message().find("write buffer is full") != std::string::npos);
  CHECK(steady_clock::now() - started >= milliseconds(400));

  h.storage_back();
  REQUIRE(h.vol->flush().ok());
  auto rebuilt = h.reopen_from_storage();
  for (size_t i = 0; i < answered.size(); ++i) check_reads(*rebuilt, i * (256 << 10), answered[i]);
}

TEST_CASE("outage: a writer blocked on a full buffer resumes when storage returns") {
  OutageHarness h(20'000);
  h.storage_down();
  std::vector<std::vector<std::byte>> chunks;
  for (int i = 0; i < 8; ++i) chunks.push_back(pattern(256 << 10, static_cast<uint8_t>(40 + i)));
  std::atomic<int> done{0};
  Status failed;
  std::thread writer([&] {
    for (int i = 0; i < 8; ++i) {
      Status st = h.vol->write(uint64_t(i) * (256 << 10), chunks[i], false);
      if (!st.ok()) {
        failed = st;
        return;
      }
      done++;
    }
  });
  std::this_thread::sleep_for(milliseconds(500));
  const int before = done.load();
  CHECK(before < 8);  // held back by the full buffer
  h.storage_back();   // the flusher's retry catches up and frees the buffer
  writer.join();
  CHECK(failed.ok());
  CHECK(done.load() == 8);
  REQUIRE(h.vol->flush().ok());
  auto rebuilt = h.reopen_from_storage();
  for (int i = 0; i < 8; ++i) check_reads(*rebuilt, uint64_t(i) * (256 << 10), chunks[i]);
}

TEST_CASE("outage: errors that cannot pass are not waited out") {
  OutageHarness h(30'000);
  h.storage_down(Status::InvalidArgument("InvalidRequest (injected)"));
  REQUIRE(h.vol->write(0, pattern(4096, 1), false).ok());
  const auto started = steady_clock::now();
  Status st = h.vol->flush();
  CHECK(st.is(Status::Code::kInvalidArgument));
  CHECK(steady_clock::now() - started < seconds(5));
  h.storage_back();
  CHECK(h.vol->flush().ok());
}

TEST_CASE("outage: flush_timeout_ms = 0 fails a FLUSH at the first failed upload") {
  OutageHarness h(0);
  h.storage_down();
  REQUIRE(h.vol->write(0, pattern(4096, 2), false).ok());
  const auto started = steady_clock::now();
  CHECK(h.vol->flush().is(Status::Code::kUnavailable));
  CHECK(steady_clock::now() - started < seconds(5));
  h.storage_back();
  CHECK(h.vol->flush().ok());
}

// A store that accepts uploads and never answers them (a stopped S3 server):
// the FLUSH gets its error at flush_timeout_ms whatever the PUT in flight is
// doing, status says storage is failing, buffered data is still read, and once
// the store answers again the next FLUSH uploads everything, with no restart.
TEST_CASE("outage: a store that never answers fails a FLUSH at flush_timeout_ms, and it recovers") {
  OutageHarness h(1000);
  const auto before = pattern(128 << 10, 11);
  REQUIRE(h.vol->write(0, before, false).ok());
  REQUIRE(h.vol->flush().ok());

  h.faults->hang(FaultStore::kWrites);
  const auto during = pattern(192 << 10, 12);
  REQUIRE(h.vol->write(2 << 20, during, false).ok());  // answered from the buffer
  for (int i = 0; i < 2; ++i) {  // the first meets a hung PUT of its own, the second the flusher's
    const auto started = steady_clock::now();
    Status st = h.vol->flush();
    const auto took = duration_cast<milliseconds>(steady_clock::now() - started);
    MESSAGE("FLUSH ", i + 1, " against a hung store returned after ", took.count(), " ms: ", st.ToString());
    CHECK(st.is(Status::Code::kUnavailable));
    CHECK(st.message().find("flush_timeout_ms") != std::string::npos);
    CHECK(took >= milliseconds(900));
    CHECK(took < milliseconds(1000 + 1000));
  }
  CHECK(h.faults->hanging() >= 1);  // the PUT is still stuck in the store
  VolumeStats mid = h.vol->stats();
  CHECK(mid.storage_failing_since_unix_ms != 0);
  CHECK(mid.last_storage_error.find("flush_timeout_ms") != std::string::npos);
  CHECK(mid.dirty_bytes >= during.size());
  check_reads(*h.vol, 2 << 20, during);  // served from the buffer

  h.faults->release();
  const auto started = steady_clock::now();
  REQUIRE(h.vol->flush().ok());
  CHECK(steady_clock::now() - started < seconds(5));
  VolumeStats after = h.vol->stats();
  CHECK(after.storage_failing_since_unix_ms == 0);
  CHECK(after.dirty_bytes == 0);
  check_reads(*h.vol, 0, before);
  check_reads(*h.vol, 2 << 20, during);

  auto rebuilt = h.reopen_from_storage();
  check_reads(*rebuilt, 0, before);
  check_reads(*rebuilt, 2 << 20, during);
}
