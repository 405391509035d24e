// Helpers shared by the Journal's unit tests (src/engine/journal_test.cc,
// journal_damage_test.cc): options for small journals, records that name
// themselves, and byte-level edits of the chunk files.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "src/engine/journal.h"

namespace portalbd::testing::journal {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kBlock = Journal::kBlockBytes;
// A one-block record takes align(80 + 4096) bytes; a record without payload one kAlign.
constexpr uint64_t kOneBlockRecord = 4608;

inline JournalOptions options(const std::string& dir, uint64_t chunk_bytes = 1 << 20, uint64_t chunks = 4) {
  JournalOptions o;
  o.dir = dir + "/journal";
  o.chunk_bytes = chunk_bytes;
  o.capacity_bytes = chunk_bytes * chunks;
  o.volume_uuid = "vol-1";
  o.writer_id = "writer-1";
  return o;
}

// Chunks of 16 KiB hold three one-block records each (the last 512 bytes are
// the pad's).
inline JournalOptions small_ring(const std::string& dir, uint64_t chunks = 4) {
  return options(dir, 16 * 1024, chunks);
}

inline Clock::time_point far() { return Clock::now() + std::chrono::seconds(20); }
inline Clock::time_point past() { return Clock::now() - std::chrono::seconds(1); }

// Payload bytes that name their record.
inline std::vector<std::byte> payload(uint64_t wseq, uint64_t nblocks = 1) {
  std::vector<std::byte> v(nblocks * kBlock);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::byte(static_cast<uint8_t>(wseq * 131 + i / 7));
  return v;
}

inline Status append_data(Journal& j, uint64_t wseq, uint64_t nblocks = 1, Clock::time_point deadline = far()) {
  return j.append(wseq, wseq * 10, nblocks, ExtentState::kData, payload(wseq, nblocks), deadline);
}

inline OpenedJournal open_ok(const JournalOptions& o) {
  auto r = Journal::Open(o);
  if (!r.ok()) FAIL_CHECK(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Checks that the records are consecutive data records first..last made by append_data.
inline void check_records(const std::vector<JournalRecord>& records, uint64_t first, uint64_t last) {
  REQUIRE(records.size() == last - first + 1);
  for (size_t i = 0; i < records.size(); ++i) {
    const JournalRecord& r = records[i];
    CHECK(r.wseq == first + i);
    CHECK(r.lba == r.wseq * 10);
    CHECK(r.state == ExtentState::kData);
    CHECK(r.data == payload(r.wseq, r.nblocks));
  }
}

inline std::string chunk_path(const JournalOptions& o, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "chunk-%04d", i);
  return o.dir + "/" + buf;
}

inline void poke(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes) {
  int fd = ::open(path.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

inline void flip(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  uint8_t b = 0;
  REQUIRE(::pread(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  b ^= 0x5a;
  REQUIRE(::pwrite(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  ::close(fd);
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// What this process has read through read(2) and pread(2) so far
// (/proc/self/io rchar): every byte Open reads, whichever way it reads it.
inline uint64_t process_bytes_read() {
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  FAIL("no rchar in /proc/self/io");
  return 0;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace portalbd::testing::journal
