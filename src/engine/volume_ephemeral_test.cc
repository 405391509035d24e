// Ephemeral volumes (memory://): blocks stay in the buffers they arrived in,
// inside the layers' maps; nothing is sealed, uploaded or indexed.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "src/engine/snapshot_device.h"
#include "src/engine/volume.h"
#include "src/store/memory_store.h"

using namespace portalbd;

namespace {

VolumeOptions ephemeral_options(uint64_t size = 8ull << 20) {
  VolumeOptions o;
  o.flatten_min_depth = 1;  // every snapshot chain reads through a flattened base
  o.size_bytes = size;
  o.segment_bytes = 256 << 10;
  o.write_buffer_bytes = 1 << 20;  // no bound on an ephemeral volume: it holds all its data anyway
  o.flush_interval_ms = 0;
  o.cache_bytes = 128 << 10;
  o.index_path = kInMemoryIndex;
  o.ephemeral = true;
  return o;
}

std::vector<std::byte> filled(size_t n, uint8_t value) { return std::vector<std::byte>(n, std::byte{value}); }

std::vector<std::byte> read_back(BlockDevice& d, uint64_t offset, size_t n) {
  std::vector<std::byte> got(n);
  REQUIRE(d.read(offset, got).ok());
  return got;
}

size_t segment_objects(MemoryStore& store) {
  std::vector<ObjectInfo> objects;
  REQUIRE(store.list("segments/", &objects).ok());
  return objects.size();
}

}  // namespace

TEST_SUITE("engine.ephemeral") {
  TEST_CASE("writes are served from memory: nothing is sealed, uploaded or dirty, FLUSH and FUA return at once") {
    auto store = std::make_shared<MemoryStore>();
    auto v = Volume::Open(store, ephemeral_options());
    REQUIRE(v.ok());
    REQUIRE((*v)->write(0, filled(8192, 0xAA), true).ok());            // FUA
    REQUIRE((*v)->write(4 << 20, filled(3 << 20, 0xBB), false).ok());  // more than the write buffer holds
    REQUIRE((*v)->write(100, filled(10, 0xCC), false).ok());           // read-modify-write of a partial block
    REQUIRE((*v)->flush().ok());
    const VolumeStats st = (*v)->stats();
    CHECK(st.dirty_bytes == 0);
    CHECK(st.segments_written == 0);
    CHECK(st.bytes_live == 8192 + (3 << 20));
    CHECK(st.bytes_stored == 8192 + (3 << 20));  // the buffers holding it: the partial write went in place
    CHECK(segment_objects(*store) == 0);
    auto head = read_back(**v, 0, 8192);
    CHECK(head[99] == std::byte{0xAA});
    CHECK(head[100] == std::byte{0xCC});
    CHECK(head[110] == std::byte{0xAA});
    CHECK(read_back(**v, 4 << 20, 3 << 20) == filled(3 << 20, 0xBB));
    // A trim drops the buffers it covers.
    REQUIRE((*v)->trim(0, 8 << 20, false).ok());
    CHECK((*v)->stats().bytes_stored == 0);
    CHECK((*v)->stats().bytes_live == 0);
    REQUIRE((*v)->close().ok());
    CHECK(segment_objects(*store) == 0);  // close has nothing to upload either
    CHECK((*v)->checkpoint().status().is(Status::Code::kNotSupported));
  }

  TEST_CASE("random operations match a flat model, with snapshots holding their own view") {
    auto store = std::make_shared<MemoryStore>();
    auto v = Volume::Open(store, ephemeral_options());
    REQUIRE(v.ok());
    std::mt19937_64 rng(11);
    std::vector<std::byte> model(8 << 20);
    std::vector<std::pair<std::string, std::vector<std::byte>>> snapshots;
    for (int i = 0; i < 800; ++i) {
      uint64_t off = rng() % model.size();
      if (rng() % 2) off -= off % kBlockSize;
      const uint64_t len = 1 + rng() % std::min<uint64_t>(model.size() - off, 3 * 65536);
      switch (rng() % 10) {
        case 0:
        case 1:
        case 2:
        case 3: {
          std::vector<std::byte> data(len);
          for (auto& b : data) b = std::byte(static_cast<uint8_t>(rng()));
          REQUIRE((*v)->write(off, data, false).ok());
          std::memcpy(model.data() + off, data.data(), len);
          break;
        }
        case 4:
          REQUIRE((*v)->write_zeroes(off, len, false).ok());
          std::memset(model.data() + off, 0, len);
          break;
        case 5:
          REQUIRE((*v)->trim(off, len, false).ok());
          std::memset(model.data() + off, 0, len);
          break;
        case 6:
          if (rng() % 8 == 0) {
            const std::string name = "s" + std::to_string(i);
            REQUIRE((*v)->create_snapshot(name).ok());
            snapshots.emplace_back(name, model);
          } else if (rng() % 4 == 0) {
            GcOptions gc;
            gc.grace_ms = 0;
            REQUIRE((*v)->gc(gc).ok());
          }
          break;
        default: {
          std::vector<std::byte> got(len);
          REQUIRE((*v)->read(off, got).ok());
          REQUIRE(std::memcmp(got.data(), model.data() + off, len) == 0);
        }
      }
    }
    REQUIRE(snapshots.size() >= 2);
    CHECK(read_back(**v, 0, model.size()) == model);
    for (const auto& [name, image] : snapshots) {
      auto snap = (*v)->open_snapshot(name);
      REQUIRE(snap.ok());
      CHECK(read_back(**snap, 0, image.size()) == image);
    }
    // Restore is the same root swap: the device reads as the snapshot did.
    REQUIRE((*v)->restore_snapshot(snapshots.front().first, false).ok());
    CHECK(read_back(**v, 0, model.size()) == snapshots.front().second);
    CHECK(segment_objects(*store) == 0);
  }

  TEST_CASE("an overwrite goes into the live layer's own earlier buffer, never into one a snapshot holds") {
    auto store = std::make_shared<MemoryStore>();
    auto v = Volume::Open(store, ephemeral_options());
    REQUIRE(v.ok());
    auto in_place = [&] { return (*v)->stats().overwrites_in_place; };
    REQUIRE((*v)->write(0, filled(1 << 20, 0x11), false).ok());
    REQUIRE((*v)->write(8192, filled(4096, 0x22), false).ok());  // inside the 1 MiB write
    CHECK(in_place() == 1);
    REQUIRE((*v)->write(1 << 20, filled(8192, 0x23), false).ok());           // past it: a buffer of its own
    REQUIRE((*v)->write((1 << 20) - 4096, filled(8192, 0x24), false).ok());  // across two extents
    CHECK(in_place() == 1);
    REQUIRE((*v)->create_snapshot("before").ok());
    // The snapshot's layer holds the 1 MiB buffer now: a new one is made...
    REQUIRE((*v)->write(8192, filled(4096, 0x33), false).ok());
    CHECK(in_place() == 1);
    // ...and that one is the live layer's own, so the next write of it goes in place.
    REQUIRE((*v)->write(8192, filled(4096, 0x44), false).ok());
    CHECK(in_place() == 2);
    auto snap = (*v)->open_snapshot("before");
    REQUIRE(snap.ok());
    CHECK(read_back(**snap, 8192, 4096) == filled(4096, 0x22));
    CHECK(read_back(**snap, 0, 4096) == filled(4096, 0x11));
    CHECK(read_back(**v, 8192, 4096) == filled(4096, 0x44));
    // Restore starts an empty live layer over the snapshot: its blocks are
    // the snapshot's, so a write there gets a new buffer again.
    REQUIRE((*v)->restore_snapshot("before", false).ok());
    REQUIRE((*v)->write(8192, filled(4096, 0x55), false).ok());
    CHECK(in_place() == 2);
    CHECK(read_back(**snap, 8192, 4096) == filled(4096, 0x22));
    auto kept = (*v)->open_snapshot((*v)->list_snapshots()->back().name);  // the pre-restore state
    REQUIRE(kept.ok());
    CHECK(read_back(**kept, 8192, 4096) == filled(4096, 0x44));
    CHECK(read_back(**v, 8192, 4096) == filled(4096, 0x55));
    // Partial-block writes are read-modify-writes of whole blocks: in place too.
    REQUIRE((*v)->write(8192 + 100, filled(10, 0x66), false).ok());
    CHECK(in_place() == 3);
    auto block = read_back(**v, 8192, 4096);
    CHECK(block[99] == std::byte{0x55});
    CHECK(block[100] == std::byte{0x66});
  }

  TEST_CASE("gc copies the live blocks out of mostly overwritten buffers, but not out of ones a snapshot holds") {
    auto store = std::make_shared<MemoryStore>();
    auto v = Volume::Open(store, ephemeral_options());
    REQUIRE(v.ok());
    // 1 MiB in one write, then every block but the 10th trimmed or zeroed
    // (overwrites would go into the buffer itself).
    REQUIRE((*v)->write(0, filled(1 << 20, 0x11), false).ok());
    REQUIRE((*v)->trim(0, 10 * kBlockSize, false).ok());
    REQUIRE((*v)->write_zeroes(11 * kBlockSize, (1 << 20) - 11 * kBlockSize, false).ok());
    GcOptions gc;
    gc.grace_ms = 0;
    auto report = (*v)->gc(gc);
    REQUIRE(report.ok());
    CHECK(report->buffers_compacted == 1);
    CHECK(report->bytes_rewritten == kBlockSize);
    CHECK(report->bytes_stored == kBlockSize);  // the 1 MiB buffer is gone
    CHECK(read_back(**v, 10 * kBlockSize, kBlockSize) == filled(kBlockSize, 0x11));
    CHECK(read_back(**v, 11 * kBlockSize, kBlockSize) == filled(kBlockSize, 0));
    // The copy is the live layer's own: the next write of that block goes into it.
    const uint64_t in_place = (*v)->stats().overwrites_in_place;
    REQUIRE((*v)->write(10 * kBlockSize, filled(kBlockSize, 0x12), false).ok());
    CHECK((*v)->stats().overwrites_in_place == in_place + 1);
    CHECK(read_back(**v, 10 * kBlockSize, kBlockSize) == filled(kBlockSize, 0x12));
    // Nothing is sparse any more: the next pass copies nothing.
    report = (*v)->gc(gc);
    REQUIRE(report.ok());
    CHECK(report->buffers_compacted == 0);

    // A snapshot maps the whole of a second 1 MiB buffer: live, so it stays.
    REQUIRE((*v)->write(2 << 20, filled(1 << 20, 0x33), false).ok());
    REQUIRE((*v)->create_snapshot("keep").ok());
    REQUIRE((*v)->write(2 << 20, filled(1 << 20, 0x44), false).ok());
    report = (*v)->gc(gc);
    REQUIRE(report.ok());
    CHECK(report->buffers_compacted == 0);
    auto snap = (*v)->open_snapshot("keep");
    REQUIRE(snap.ok());
    CHECK(read_back(**snap, 2 << 20, 1 << 20) == filled(1 << 20, 0x33));
    CHECK(read_back(**v, 2 << 20, 1 << 20) == filled(1 << 20, 0x44));
  }

  TEST_CASE("deleting a snapshot lets gc merge its layer; the data stays readable") {
    auto store = std::make_shared<MemoryStore>();
    auto v = Volume::Open(store, ephemeral_options());
    REQUIRE(v.ok());
    REQUIRE((*v)->write(0, filled(65536, 0x55), false).ok());
    REQUIRE((*v)->create_snapshot("a").ok());
    REQUIRE((*v)->write(4096, filled(4096, 0x66), false).ok());
    REQUIRE((*v)->delete_snapshot("a").ok());
    GcOptions gc;
    gc.grace_ms = 0;
    auto report = (*v)->gc(gc);
    REQUIRE(report.ok());
    CHECK(report->layers_merged == 1);
    CHECK(report->checkpoint_seq == 0);  // nothing to checkpoint on an ephemeral volume
    auto got = read_back(**v, 0, 65536);
    CHECK(got[0] == std::byte{0x55});
    CHECK(got[4096] == std::byte{0x66});
    CHECK(got[8192] == std::byte{0x55});
    CHECK((*v)->stats().bytes_live == 65536);
  }
}
