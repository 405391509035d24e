// StreamDetector (stream_detector.h): sequential readers are found, also
// when their requests arrive out of order; each byte is asked for once, in
// windows that grow to the maximum; random readers and other views are not
// taken for a stream.
#include "src/engine/stream_detector.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

using namespace portalbd;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

// Feeds reads and checks the ranges asked for are contiguous and never overlap.
struct Recorder {
  StreamDetector d{2 * kMiB, 32 * kMiB};
  std::vector<StreamDetector::Range> asked;
  StreamDetector::Range read(uint64_t view, uint64_t offset, uint64_t length) {
    auto r = d.observe(view, offset, length);
    if (r.length > 0) asked.push_back(r);
    return r;
  }
};

}  // namespace

TEST_SUITE("engine.stream_detector") {
  TEST_CASE("a sequential reader is read ahead of, each byte once, in growing windows") {
    Recorder rec;
    constexpr uint64_t kRead = 128 << 10;  // the kernel's read size
    CHECK(rec.read(0, 0, kRead).length == 0);
    CHECK(rec.read(0, kRead, kRead).length == 0);
    CHECK(rec.read(0, 2 * kRead, kRead).length == 0);
    auto first = rec.read(0, 3 * kRead, kRead);  // the third read after the first
    CHECK(first.offset == 4 * kRead);
    CHECK(first.length == 2 * kMiB);
    for (uint64_t off = 4 * kRead; off < 256 * kMiB; off += kRead) rec.read(0, off, kRead);
    REQUIRE(rec.asked.size() >= 5);
    for (size_t i = 1; i < rec.asked.size(); ++i) {
      CHECK(rec.asked[i].offset == rec.asked[i - 1].offset + rec.asked[i - 1].length);  // contiguous
      CHECK(rec.asked[i].length <= 32 * kMiB + 2 * kRead);
    }
    // The window reached the maximum, and the reader never outran what was asked.
    CHECK(std::any_of(rec.asked.begin(), rec.asked.end(),
                      [](const StreamDetector::Range& r) { return r.length >= 16 * kMiB; }));
    const auto& last = rec.asked.back();
    CHECK(last.offset + last.length >= 256 * kMiB);
  }

  TEST_CASE("reads arriving out of order, as a queue depth brings them, still make a stream") {
    Recorder rec;
    std::mt19937_64 rng(42);
    uint64_t asked_to = 0;
    for (uint64_t group = 0; group < 64; ++group) {
      std::vector<uint64_t> offs;
      for (uint64_t i = 0; i < 8; ++i) offs.push_back((group * 8 + i) * kMiB);  // 8 x 1 MiB in flight
      std::shuffle(offs.begin(), offs.end(), rng);
      for (uint64_t off : offs) {
        auto r = rec.read(0, off, kMiB);
        if (r.length > 0) asked_to = r.offset + r.length;
      }
    }
    CHECK(rec.asked.size() >= 3);
    CHECK(asked_to >= 512 * kMiB);
  }

  TEST_CASE("random 4 KiB reads never look sequential") {
    Recorder rec;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 20000; ++i) rec.read(0, (rng() % (64 * kMiB / 4096)) * 4096, 4096);
    CHECK(rec.asked.empty());
  }

  TEST_CASE("two interleaved readers, and two views, are separate streams") {
    Recorder rec;
    uint64_t a_asked = 0, b_asked = 0, snap_asked = 0;
    for (uint64_t i = 0; i < 64; ++i) {
      auto a = rec.read(0, i * 65536, 65536);                       // live, from 0
      auto b = rec.read(0, 512 * kMiB + i * 65536, 65536);          // live, from 512 MiB
      auto s = rec.read(0xabc, 512 * kMiB + i * 65536 + 1, 65536);  // a snapshot view, same offsets
      if (a.length) a_asked = a.offset + a.length;
      if (b.length) b_asked = b.offset + b.length;
      if (s.length) snap_asked = s.offset + s.length;
    }
    CHECK(a_asked > 64 * 65536);
    CHECK(a_asked < 512 * kMiB);
    CHECK(b_asked > 512 * kMiB + 64 * 65536);
    CHECK(snap_asked > 512 * kMiB + 64 * 65536);
  }

  TEST_CASE("read-ahead off: a zero window asks for nothing") {
    StreamDetector d(0, 0);
    for (uint64_t i = 0; i < 100; ++i) CHECK(d.observe(0, i * 4096, 4096).length == 0);
  }
}
