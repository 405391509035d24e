#include "daemon/background_gc.h"

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "src/store/counting_store.h"
#include "src/store/file_store.h"
#include "tests/unit/noise.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;
using namespace std::chrono_literals;

namespace {

VolumeOptions options(const std::string& dir) {
  VolumeOptions o;
  o.size_bytes = 64 << 20;
  o.segment_bytes = 1 << 20;
  o.write_buffer_bytes = 4 << 20;
  o.flush_interval_ms = 0;
  o.cache_bytes = 1 << 20;
  o.index_path = dir + "/index.sqlite";
  return o;
}

using portalbd::testing::noise;

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

TEST_SUITE("daemon.background_gc") {
  TEST_CASE("ticks on an unchanged volume send nothing to the store; changes and due deletions still get a pass") {
    testing::TempDir dir;
    auto file = FileStore::Open(dir.path + "/data");
    REQUIRE(file.ok());
    auto counted = std::make_shared<CountingStore>(*file);
    auto requests = [&] { return counted->counts(CountingStore::kVolume); };
    auto v = Volume::Open(counted, options(dir.path));
    REQUIRE(v.ok());
    std::shared_ptr<Volume> vol = *v;
    REQUIRE(vol->write(0, noise(1 << 20, 1), true).ok());
    REQUIRE(vol->write(0, noise(1 << 20, 2), true).ok());  // the first segment is garbage

    GcOptions gc;
    gc.grace_ms = 400;
    BackgroundGc background(vol, gc, 20ms);
    background.start();
    // Doomed, then deleted once its grace period is over, though nothing
    // changed in between: next_delete_unix_ms brings the pass back.
    REQUIRE(eventually([&] { return requests().remove > 0; }));
    // The pass after one that did work runs too; the ticks after it skip.
    const uint64_t skipped = background.passes_skipped();
    REQUIRE(eventually([&] { return background.passes_skipped() > skipped + 2; }));

    const StoreRequestCounts before = requests();
    const uint64_t ran = background.passes_run();
    std::this_thread::sleep_for(500ms);  // ~25 ticks
    const StoreRequestCounts after = requests();
    CHECK_MESSAGE(after.requests() == before.requests(),
                  "idle ticks sent " << after.requests() - before.requests() << " store requests (list "
                                     << after.list - before.list << ", put " << after.put - before.put << ")");
    CHECK(background.passes_run() == ran);
    CHECK(background.passes_skipped() > 10);

    // A snapshot deleted is a change: its data is reclaimed without asking.
    REQUIRE(vol->create_snapshot("s").ok());
    REQUIRE(vol->write(0, noise(1 << 20, 3), true).ok());
    const uint64_t removed = requests().remove;
    REQUIRE(vol->delete_snapshot("s").ok());
    CHECK(eventually([&] { return requests().remove > removed; }));
    CHECK(background.passes_run() > ran);

    // And quiet again afterwards.
    REQUIRE(eventually([&] {
      const uint64_t n = requests().requests();
      std::this_thread::sleep_for(200ms);
      return requests().requests() == n;
    }));
    background.stop();
    REQUIRE(vol->close().ok());
  }

  TEST_CASE("the periodic checkpoint still comes once enough was written, from ticks alone") {
    testing::TempDir dir;
    auto file = FileStore::Open(dir.path + "/data");
    REQUIRE(file.ok());
    auto v = Volume::Open(*file, options(dir.path));
    REQUIRE(v.ok());
    std::shared_ptr<Volume> vol = *v;
    GcOptions gc;
    gc.checkpoint_after_seqs = 4;
    BackgroundGc background(vol, gc, 20ms);
    background.start();
    REQUIRE(eventually([&] { return background.passes_skipped() > 0; }));
    CHECK(vol->stats().last_checkpoint_seq == 0);
    for (int i = 0; i < 5; ++i) REQUIRE(vol->write(i * 65536, noise(65536, 10 + i), true).ok());
    CHECK(eventually([&] { return vol->stats().last_checkpoint_seq >= 5; }));
    background.stop();
    REQUIRE(vol->close().ok());
  }
}
