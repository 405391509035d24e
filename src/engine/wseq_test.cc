// Write sequence numbers (issue 20's groundwork): every write takes the next
// one, each segment records the newest it holds and who stored it, and a
// reopened volume numbers on after the newest in storage.
#include <doctest/doctest.h>

#include <vector>

#include "src/engine/volume.h"
#include "src/format/segment.h"
#include "src/store/memory_store.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

VolumeOptions options(const std::string& dir) {
  VolumeOptions o;
  o.size_bytes = 8ull << 20;
  o.segment_bytes = 256 << 10;
  o.write_buffer_bytes = 1 << 20;
  o.flush_interval_ms = 0;
  o.index_path = dir + "/index.sqlite";
  return o;
}

// Every segment footer in storage, by sequence number.
std::vector<SegmentFooter> footers(ObjectStore& store) {
  std::vector<ObjectInfo> objects;
  REQUIRE(store.list("segments/", &objects).ok());
  std::vector<SegmentFooter> out;
  for (const auto& o : objects) {
    std::vector<std::byte> bytes;
    REQUIRE(store.get(o.key, &bytes).ok());
    auto f = parse_segment_object(bytes);
    REQUIRE(f.ok());
    out.push_back(*f);
  }
  return out;
}

}  // namespace

TEST_SUITE("engine.wseq") {
  TEST_CASE("segments record the newest write they hold and their writer; a reopen numbers on") {
    portalbd::testing::TempDir dir;
    auto store = std::make_shared<MemoryStore>();
    const std::vector<std::byte> block(4096, std::byte{7});
    uint64_t writer = 0;
    {
      auto v = Volume::Open(store, options(dir.path));
      REQUIRE(v.ok());
      for (int i = 0; i < 3; ++i) REQUIRE((*v)->write(i * 4096, block, false).ok());
      REQUIRE((*v)->flush().ok());  // writes 1-3
      REQUIRE((*v)->trim(0, 4096, false).ok());
      REQUIRE((*v)->flush().ok());  // write 4 (a trim is a write too)
      auto all = footers(*store);
      REQUIRE(all.size() == 2);
      CHECK(all[0].max_wseq == 3);
      CHECK(all[1].max_wseq == 4);
      CHECK(all[0].writer != 0);
      CHECK(all[0].writer == all[1].writer);
      writer = all[0].writer;
      REQUIRE((*v)->close().ok());
    }
    // A second start: a new writer, and numbers after storage's newest (4),
    // also when the index is rebuilt from storage alone.
    for (const char* index : {"/index.sqlite", "/fresh.sqlite"}) {
      VolumeOptions o = options(dir.path);
      o.index_path = dir.path + index;
      auto v = Volume::Open(store, o);
      REQUIRE(v.ok());
      REQUIRE((*v)->write(8 * 4096, block, false).ok());
      REQUIRE((*v)->flush().ok());
      auto all = footers(*store);
      const SegmentFooter& last = all.back();
      CHECK(last.max_wseq == 5 + (index[1] == 'f' ? 1 : 0));
      CHECK(last.writer != 0);
      CHECK(last.writer != writer);
      REQUIRE((*v)->close().ok());
    }
  }
}
