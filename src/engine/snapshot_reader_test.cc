// SnapshotReader beside a live writer on one store: the reader serves its
// snapshot byte for byte while the writer overwrites, snapshots, deletes and
// collects; it never writes to the store; a snapshot deleted and collected
// under it reads as an error naming the object, never as zeros.
#include "src/engine/snapshot_reader.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <random>

#include "src/engine/volume.h"
#include "src/store/counting_store.h"
#include "src/store/memory_store.h"
#include "tests/unit/noise.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

using portalbd::testing::TempDir;

constexpr uint64_t kDataBytes = 4 << 20;

VolumeOptions writer_options(const std::string& dir) {
  VolumeOptions o;
  o.size_bytes = 64 << 20;
  o.segment_bytes = 1 << 20;
  o.write_buffer_bytes = 4 << 20;
  o.flush_interval_ms = 0;
  o.cache_bytes = 1 << 20;
  o.index_path = dir + "/writer.sqlite";
  return o;
}

SnapshotReaderOptions reader_options(const std::string& dir, const std::string& snapshot) {
  SnapshotReaderOptions o;
  o.snapshot = snapshot;
  o.index_dir = dir + "/reader";
  o.volume.cache_bytes = 0;  // every read goes to storage: a stale map shows
  o.volume.read_ahead_bytes = 0;
  o.retry_delay_ms = 1;
  return o;
}

using portalbd::testing::noise;

std::vector<std::byte> read_range(BlockDevice& d, uint64_t offset, uint64_t len) {
  std::vector<std::byte> out(len);
  Status st = d.read(offset, out);
  INFO(st.ToString());
  REQUIRE(st.ok());
  return out;
}

GcOptions collect_now() {
  GcOptions g;
  g.grace_ms = 0;
  return g;
}

// The store changes nothing but through these.
uint64_t writes_of(const CountingStore& c) {
  auto n = c.counts(CountingStore::kVolume);
  auto l = c.counts(CountingStore::kLease);
  return n.put + n.put_if_absent + n.remove + l.put + l.put_if_absent + l.remove;
}

// Fails the first `failures` GETs of checkpoints with kNotFound, as if the
// writer pruned the one listed just before.
class VanishingCheckpoints final : public ObjectStore {
 public:
  VanishingCheckpoints(std::shared_ptr<ObjectStore> inner, int failures)
      : inner_(std::move(inner)), failures_(failures) {}
  Status put(const std::string& k, std::span<const std::byte> d) override { return inner_->put(k, d); }
  Status put_if_absent(const std::string& k, std::span<const std::byte> d) override {
    return inner_->put_if_absent(k, d);
  }
  bool supports_conditional_put() const override { return inner_->supports_conditional_put(); }
  Status get_range(const std::string& k, uint64_t o, uint64_t n, std::vector<std::byte>* out) override {
    return inner_->get_range(k, o, n, out);
  }
  Status get(const std::string& k, std::vector<std::byte>* out) override {
    if (k.starts_with("checkpoints/") && failures_.fetch_sub(1) > 0)
      return Status::NotFound("object " + k + " not found");
    return inner_->get(k, out);
  }
  Result<ObjectInfo> head(const std::string& k) override { return inner_->head(k); }
  Status list(const std::string& p, std::vector<ObjectInfo>* out) override { return inner_->list(p, out); }
  Status remove(const std::string& k) override { return inner_->remove(k); }
  std::string url() const override { return inner_->url(); }
  bool persistent() const override { return inner_->persistent(); }

 private:
  std::shared_ptr<ObjectStore> inner_;
  std::atomic<int> failures_;
};

}  // namespace

TEST_SUITE("engine.snapshot_reader") {
  TEST_CASE(
      "a reader serves its snapshot byte-identical while the writer overwrites, snapshots, deletes and collects") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto writer = Volume::Open(store, writer_options(dir.path));
    REQUIRE(writer.ok());
    Volume& w = **writer;
    // The first segments (1 MiB each) are three quarters overwritten before
    // the snapshot, so GC rewrites them: the snapshot's blocks move while the
    // reader serves it.
    auto pattern = noise(kDataBytes, 99);
    REQUIRE(w.write(0, pattern, true).ok());
    for (uint64_t mib = 0; mib < kDataBytes; mib += 1 << 20) {
      const auto fresh = noise(768 << 10, 1000 + mib);
      REQUIRE(w.write(mib, fresh, false).ok());
      std::memcpy(pattern.data() + mib, fresh.data(), fresh.size());
    }
    REQUIRE(w.flush().ok());
    REQUIRE(w.checkpoint().ok());
    REQUIRE(w.create_snapshot("s1").ok());

    auto counting = std::make_shared<CountingStore>(store);
    auto opened = SnapshotReader::Open(counting, reader_options(dir.path, "s1"));
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    SnapshotReader& r = **opened;
    CHECK(r.read_only());
    CHECK(r.size_bytes() == w.size_bytes());
    CHECK(read_range(r, 0, kDataBytes) == pattern);
    CHECK(r.write(0, pattern, false).is(Status::Code::kReadOnly));
    CHECK(r.write_zeroes(0, 4096, false).is(Status::Code::kReadOnly));
    CHECK(r.trim(0, 4096, false).is(Status::Code::kReadOnly));

    // A second thread reads the snapshot all the while.
    std::atomic<bool> stop{false};
    auto background = std::async(std::launch::async, [&] {
      uint64_t mismatches = 0, errors = 0, reads = 0;
      std::mt19937_64 rng(7);
      while (!stop.load()) {
        const uint64_t off = (rng() % (kDataBytes / 65536)) * 65536;
        std::vector<std::byte> got(65536);
        if (!r.read(off, got).ok()) {
          errors++;
        } else if (std::memcmp(got.data(), pattern.data() + off, got.size()) != 0) {
          mismatches++;
        }
        reads++;
      }
      return std::tuple{mismatches, errors, reads};
    });
    GcReport total;
    for (int round = 0; round < 6; ++round) {
      REQUIRE(w.write(0, noise(kDataBytes, 200 + round), true).ok());
      REQUIRE(w.create_snapshot("t" + std::to_string(round)).ok());
      if (round > 0) REQUIRE(w.delete_snapshot("t" + std::to_string(round - 1)).ok());
      for (int pass = 0; pass < 2; ++pass) {
        auto g = w.gc(collect_now());
        REQUIRE(g.ok());
        total.segments_rewritten += g->segments_rewritten;
        total.segments_deleted += g->segments_deleted;
        total.layers_merged += g->layers_merged;
      }
      CHECK(read_range(r, 0, kDataBytes) == pattern);
    }
    stop = true;
    auto [mismatches, errors, reads] = background.get();
    CHECK(reads > 0);
    CHECK(mismatches == 0);
    CHECK(errors == 0);
    // The scenario did what it is about: GC moved and deleted segments.
    CHECK(total.segments_rewritten > 0);
    CHECK(total.segments_deleted > 0);
    CHECK(total.layers_merged > 0);
    CHECK(r.stats().loads >= 2);  // a read found its segment gone and reloaded
    CHECK(read_range(r, 0, kDataBytes) == pattern);
    CHECK(writes_of(*counting) == 0);
    const auto reads_made = counting->counts(CountingStore::kVolume);
    CHECK(reads_made.get + reads_made.get_range > 0);  // it did read through this store
    // The writer's view is its own: the newest overwrite.
    CHECK(read_range(w, 0, kDataBytes) == noise(kDataBytes, 205));
    REQUIRE(w.close().ok());
  }

  TEST_CASE("an unknown snapshot or a store without a volume is a clear kNotFound, and nothing is written") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto counting = std::make_shared<CountingStore>(store);
    auto none = SnapshotReader::Open(counting, reader_options(dir.path, "s1"));
    REQUIRE_FALSE(none.ok());
    CHECK(none.status().is(Status::Code::kNotFound));
    CHECK(none.status().message().find("volume.json") != std::string::npos);
    CHECK(writes_of(*counting) == 0);

    auto writer = Volume::Open(store, writer_options(dir.path));
    REQUIRE(writer.ok());
    REQUIRE((*writer)->write(0, noise(65536, 3), true).ok());
    REQUIRE((*writer)->create_snapshot("s1").ok());
    auto unknown = SnapshotReader::Open(counting, reader_options(dir.path, "nope"));
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.status().is(Status::Code::kNotFound));
    CHECK(unknown.status().message().find("'nope'") != std::string::npos);
    auto bad = SnapshotReader::Open(counting, reader_options(dir.path, "a/b"));
    CHECK(bad.status().is(Status::Code::kInvalidArgument));
    CHECK(writes_of(*counting) == 0);
    REQUIRE((*writer)->close().ok());
  }

  TEST_CASE("an object vanishing between LIST and GET is retried from a fresh listing; too many fail clearly") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto writer = Volume::Open(store, writer_options(dir.path));
    REQUIRE(writer.ok());
    const auto pattern = noise(1 << 20, 5);
    REQUIRE((*writer)->write(0, pattern, true).ok());
    REQUIRE((*writer)->create_snapshot("s1").ok());
    REQUIRE((*writer)->checkpoint().ok());

    auto once = SnapshotReader::Open(std::make_shared<VanishingCheckpoints>(store, 1), reader_options(dir.path, "s1"));
    INFO(once.status().ToString());
    REQUIRE(once.ok());
    CHECK((*once)->stats().load_failures == 1);
    CHECK(read_range(**once, 0, pattern.size()) == pattern);
    once->reset();

    auto opts = reader_options(dir.path, "s1");
    opts.open_attempts = 3;
    auto always = SnapshotReader::Open(std::make_shared<VanishingCheckpoints>(store, 1000), opts);
    REQUIRE_FALSE(always.ok());
    CHECK(always.status().message().find("in 3 attempts") != std::string::npos);
    CHECK_FALSE(always.status().is(Status::Code::kNotFound));  // kNotFound would say the snapshot is not there
    CHECK(always.status().message().find("checkpoints/") != std::string::npos);
    REQUIRE((*writer)->close().ok());
  }

  TEST_CASE("a snapshot deleted and collected under a reader reads as EIO naming the object, never zeros") {
    TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    auto writer = Volume::Open(store, writer_options(dir.path));
    REQUIRE(writer.ok());
    Volume& w = **writer;
    const auto pattern = noise(kDataBytes, 11);
    REQUIRE(w.write(0, pattern, true).ok());
    REQUIRE(w.create_snapshot("s1").ok());
    auto counting = std::make_shared<CountingStore>(store);
    auto opened = SnapshotReader::Open(counting, reader_options(dir.path, "s1"));
    REQUIRE(opened.ok());
    SnapshotReader& r = **opened;
    CHECK(read_range(r, 0, kDataBytes) == pattern);

    REQUIRE(w.write(0, noise(kDataBytes, 12), true).ok());  // nothing of s1 is live any more
    REQUIRE(w.delete_snapshot("s1").ok());
    uint64_t deleted = 0;
    for (int pass = 0; pass < 3; ++pass) {
      auto g = w.gc(collect_now());
      REQUIRE(g.ok());
      deleted += g->segments_deleted;
    }
    REQUIRE(deleted > 0);

    std::vector<std::byte> got(kDataBytes, std::byte{0x5a});
    Status st = r.read(0, got);
    INFO(st.ToString());
    CHECK(st.is(Status::Code::kIOError));
    CHECK(st.message().find("segments/") != std::string::npos);
    CHECK(st.message().find("deleted") != std::string::npos);
    CHECK(r.stats().deleted);
    // Again, without another reload: still an error.
    const uint64_t loads = r.stats().loads;
    CHECK(r.read(0, got).is(Status::Code::kIOError));
    CHECK(r.stats().loads == loads);
    CHECK(writes_of(*counting) == 0);
    REQUIRE(w.close().ok());
  }
}
