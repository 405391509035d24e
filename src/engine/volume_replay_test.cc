// Rebuild from storage after a crash (invariant 3 in volume.h): a hole in the
// sequence numbers, or a torn segment, among the last kMaxUploadWindow
// segments is a legal crash state only while nothing shows that segment was
// committed. Here every segment was sealed with nothing before it pending
// (FUA writes), and names its committed predecessor (SegmentFooter::prev_seq),
// so a hole or a torn segment anywhere but the newest is damage: refused, or
// with repair quarantined and the rest kept. Segments sealed behind a missing
// one are a crash's tail (volume_upload_test.cc, "a crash with several
// uploads in flight rebuilds a prefix of the writes"). More damage cases:
// volume_damage_test.cc.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>

#include "src/engine/volume.h"
#include "src/store/memory_store.h"
#include "tests/unit/numbered_segments.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

using portalbd::testing::TempDir;

using portalbd::testing::check_numbered_segment;
using portalbd::testing::numbered_pattern;
using portalbd::testing::write_numbered_segments;
constexpr uint64_t kSegmentBytes = portalbd::testing::kNumberedSegmentBytes;

VolumeOptions replay_options(const std::string& index_path) {
  VolumeOptions o;
  o.size_bytes = 16ull << 20;
  o.segment_bytes = kSegmentBytes;
  o.flush_interval_ms = 0;
  o.index_path = index_path;
  return o;
}

void remove_index(const std::string& index_path) {
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(index_path + suffix);
}

// Rebuilt from the objects alone, into a new index.
std::shared_ptr<Volume> open_fresh(std::shared_ptr<ObjectStore> store, const std::string& index_path) {
  remove_index(index_path);
  auto v = Volume::Open(std::move(store), replay_options(index_path));
  REQUIRE_MESSAGE(v.ok(), v.status().ToString());
  return *v;
}

// What a kill -9 mid-PUT leaves on a store without atomic PUTs.
void tear(MemoryStore& store, uint64_t seq) {
  std::vector<std::byte> raw;
  REQUIRE(store.get(segment_key(seq), &raw).ok());
  raw.resize(raw.size() / 2);
  REQUIRE(store.put(segment_key(seq), raw).ok());
}

}  // namespace

TEST_SUITE("engine.replay") {
  TEST_CASE("a hole or a torn segment among committed segments is damage, even inside the upload window") {
    TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    {
      auto v = Volume::Open(mem, replay_options(dir.path + "/index.sqlite"));
      REQUIRE(v.ok());
      write_numbered_segments(**v, 1, 5, true);
      REQUIRE((*v)->close().ok());
    }
    // 2 is gone and 4 half written, though 3 and 5 show both were committed.
    REQUIRE(mem->remove(segment_key(2)).ok());
    tear(*mem, 4);
    remove_index(dir.path + "/index.sqlite");
    auto refused = Volume::Open(mem, replay_options(dir.path + "/index.sqlite"));
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().is(Status::Code::kCorruption));
    CHECK(refused.status().message().find(segment_key(2) + " is missing") != std::string::npos);
    CHECK(refused.status().message().find(segment_key(4)) != std::string::npos);
    CHECK(mem->head(segment_key(4)).ok());  // evidence kept

    remove_index(dir.path + "/index.sqlite");
    VolumeOptions repair = replay_options(dir.path + "/index.sqlite");
    repair.repair = true;
    auto opened = Volume::Open(mem, repair);
    REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
    auto v = *opened;
    check_numbered_segment(*v, 1);
    check_numbered_segment(*v, 2, false);
    check_numbered_segment(*v, 3);
    check_numbered_segment(*v, 4, false);
    check_numbered_segment(*v, 5);
    CHECK(mem->head(segment_key(4)).status().is(Status::Code::kNotFound));  // quarantined
    CHECK(mem->head("quarantine/" + segment_key(4)).ok());
    CHECK(v->stats().replayed_segments == 3);
    // New segments continue after the highest sequence seen (a checkpoint of
    // the repair took one), torn or not.
    const uint64_t next = v->stats().next_seq;
    CHECK(next > 5);
    REQUIRE(v->write(8 * kSegmentBytes, numbered_pattern(4096, 9), true).ok());
    CHECK(mem->head(segment_key(next)).ok());
  }

  TEST_CASE("a torn segment further back than kMaxUploadWindow is corruption") {
    TempDir dir;
    auto mem = std::make_shared<MemoryStore>();
    const int count = kMaxUploadWindow + 1;
    {
      auto v = Volume::Open(mem, replay_options(dir.path + "/index.sqlite"));
      REQUIRE(v.ok());
      for (int i = 1; i <= count; ++i) REQUIRE((*v)->write(i * 4096, numbered_pattern(4096, i), true).ok());
      REQUIRE((*v)->close().ok());
    }
    std::vector<std::byte> first;
    REQUIRE(mem->get(segment_key(1), &first).ok());
    tear(*mem, 1);  // kMaxUploadWindow whole segments follow it
    remove_index(dir.path + "/index.sqlite");
    auto broken = Volume::Open(mem, replay_options(dir.path + "/index.sqlite"));
    REQUIRE_FALSE(broken.ok());
    CHECK(broken.status().is(Status::Code::kCorruption));
    CHECK(mem->head(segment_key(1)).ok());  // evidence kept

    // The newest one torn is a crash's tail: nothing shows it was committed.
    REQUIRE(mem->put(segment_key(1), first).ok());
    tear(*mem, count);
    auto v = open_fresh(mem, dir.path + "/index.sqlite");
    std::vector<std::byte> got(4096);
    for (int i = 1; i <= count; ++i) {
      REQUIRE(v->read(i * 4096, got).ok());
      CHECK(got == (i == count ? std::vector<std::byte>(4096) : numbered_pattern(4096, i)));
    }
    CHECK(mem->head("quarantine/" + segment_key(count)).ok());
  }
}
