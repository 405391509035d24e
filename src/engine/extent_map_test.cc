#include "src/engine/extent_map.h"

#include <doctest/doctest.h>

#include <random>
#include <vector>

namespace {

// A value that remembers which write produced a block and at which position.
struct Tag {
  int id;
  uint64_t first;  // position of the first block within its write
  Tag sliced(uint64_t skip) const { return {id, first + skip}; }
};

using Map = portalbd::ExtentMap<Tag>;

// Expands the map into one entry per block over [0, n), -1 where unmapped.
std::vector<std::pair<int, uint64_t>> expand(const Map& m, uint64_t n) {
  std::vector<std::pair<int, uint64_t>> out(n, {-1, 0});
  m.visit(0, n, [&](uint64_t s, uint64_t len, const Tag& t) {
    for (uint64_t i = 0; i < len; ++i) out[s + i] = {t.id, t.first + i};
  });
  return out;
}

}  // namespace

TEST_SUITE("engine.extent_map") {
  TEST_CASE("assign splits and trims overlaps") {
    Map m;
    m.assign(0, 10, {1, 0});
    m.assign(3, 2, {2, 0});
    auto v = expand(m, 12);
    CHECK(v[2] == std::pair<int, uint64_t>{1, 2});
    CHECK(v[3] == std::pair<int, uint64_t>{2, 0});
    CHECK(v[4] == std::pair<int, uint64_t>{2, 1});
    CHECK(v[5] == std::pair<int, uint64_t>{1, 5});
    CHECK(v[10].first == -1);
    CHECK(m.size() == 3);
    m.erase(0, 100);
    CHECK(m.empty());
  }

  TEST_CASE("random operations match a per-block model") {
    std::mt19937_64 rng(42);
    const uint64_t n = 200;
    Map m;
    std::vector<std::pair<int, uint64_t>> model(n, {-1, 0});
    for (int op = 0; op < 5000; ++op) {
      uint64_t s = rng() % n;
      uint64_t len = 1 + rng() % std::min<uint64_t>(40, n - s);
      if (rng() % 4 == 0) {
        m.erase(s, len);
        for (uint64_t i = 0; i < len; ++i) model[s + i] = {-1, 0};
      } else {
        m.assign(s, len, {op, 0});
        for (uint64_t i = 0; i < len; ++i) model[s + i] = {op, i};
      }
      if (op % 97 == 0) REQUIRE(expand(m, n) == model);
    }
    CHECK(expand(m, n) == model);
    // Entries never overlap.
    uint64_t last_end = 0;
    for (const auto& [start, node] : m.entries()) {
      CHECK(start >= last_end);
      last_end = start + node.length;
    }
  }

  TEST_CASE("append is assign: in order in O(1), out of order or overlapping the assign way") {
    std::mt19937_64 rng(23);
    for (int round = 0; round < 200; ++round) {
      Map appended, assigned;
      uint64_t at = 0;
      for (int i = 0; i < 40; ++i) {
        // Mostly ascending (as a load from the index), sometimes back or overlapping.
        const uint64_t start = rng() % 4 == 0 ? rng() % 200 : at + rng() % 3;
        const uint64_t len = 1 + rng() % 6;
        appended.append(start, len, {i, 0});
        assigned.assign(start, len, {i, 0});
        at = start + len;
      }
      CAPTURE(round);
      CHECK(expand(appended, 260) == expand(assigned, 260));
      CHECK(appended.size() == assigned.size());
    }
  }

  TEST_CASE("visit clips to the asked range") {
    Map m;
    m.assign(100, 50, {7, 0});
    int calls = 0;
    m.visit(120, 5, [&](uint64_t s, uint64_t len, const Tag& t) {
      ++calls;
      CHECK(s == 120);
      CHECK(len == 5);
      CHECK(t.first == 20);
    });
    CHECK(calls == 1);
  }
}
