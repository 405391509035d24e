// libFuzzer target: journal recovery (src/engine/journal.h, "Recovery" and
// "Opening"). A journal's chunk files are what a crash, a torn write or a
// damaged disk left: Journal::Open must answer kCorruption or a list of
// well-formed records, never crash, over-read, loop or allocate without
// bound, whatever the bytes.
//
// A real journal is made once (4 chunks of 16 KiB: records of one and of
// two blocks, zero and hole records, a marker, a wrap of the ring, releases,
// a sync) and its files kept. Each input then edits a fresh copy of them
// and opens it. The input is a list of edits, each
//     u8 file (chunk 0-3, or 4: the start file), u16 offset (LE, modulo the
//     file's size), u8 length, that many bytes to write there (cut at the
//     file's end),
// and a first byte whose bit 0 asks for every header on a kAlign boundary
// that starts with the record magic to get its checksums recomputed (and its
// journal_id set to this journal's), so that edits of wseqs, watermarks,
// lengths and kinds get past the CRCs to the chain logic behind them.
// Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "src/engine/journal.h"
#include "src/log/log.h"
#include "src/util/crc32c.h"

using namespace portalbd;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kChunk = 16 * 1024;
constexpr int kChunks = 4;
constexpr uint64_t kAlign = Journal::kAlign;
constexpr uint64_t kHeader = Journal::kHeaderBytes;
constexpr char kMagic[8] = {'P', 'B', 'D', 'J', 'R', 'E', 'C', '1'};

struct Pristine {
  std::string base;  // the fuzzer's scratch dir
  std::vector<std::string> names;
  std::vector<std::vector<char>> files;  // chunk-0000..0003, start, meta: as the writer left them
  uint64_t journal_id = 0;
};

JournalOptions options(const std::string& dir) {
  JournalOptions o;
  o.dir = dir;
  o.chunk_bytes = kChunk;
  o.capacity_bytes = kChunk * kChunks;
  o.volume_uuid = "fuzz-volume";
  o.writer_id = "fuzz-writer";
  return o;
}

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void spill(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void put_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void put_u64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(p[i]);
  return v;
}

// The journal the inputs edit: records written, synced and partly released,
// the ring wrapped once; left as a crash leaves it (no close()).
Pristine make_pristine() {
  Pristine p;
  char tmpl[] = "/tmp/portalbd-journal-fuzz-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) __builtin_trap();
  p.base = tmpl;
  static std::string scratch;
  scratch = p.base;
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(scratch, ec);
  });
  const std::string dir = p.base + "/made";
  {
    auto opened = Journal::Open(options(dir));
    if (!opened.ok()) __builtin_trap();
    Journal& j = *opened->journal;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::vector<std::byte> one(4096), two(8192);
    uint64_t w = 0;
    for (int round = 0; round < 9; ++round) {
      for (auto& b : one) b = std::byte(static_cast<uint8_t>(round * 31 + 1));
      for (auto& b : two) b = std::byte(static_cast<uint8_t>(round * 17 + 2));
      if (!j.append(++w, round, 1, ExtentState::kData, one, deadline).ok()) __builtin_trap();
      if (!j.append(++w, 100 + round, 2, ExtentState::kData, two, deadline).ok()) __builtin_trap();
      if (!j.append(++w, 200, 8, ExtentState::kZero, {}, deadline).ok()) __builtin_trap();
      if (!j.append(++w, 300, 3, ExtentState::kHole, {}, deadline).ok()) __builtin_trap();
      if (!j.append_marker(++w, 400, 64, deadline).ok()) __builtin_trap();
      if (!j.sync(w).ok()) __builtin_trap();
      j.release(w - 3);  // keeps the ring going round; the last records stay live
    }
  }
  for (int i = 0; i < kChunks; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "chunk-%04d", i);
    p.names.push_back(name);
  }
  p.names.push_back("start");
  p.names.push_back("meta");
  for (const auto& n : p.names) p.files.push_back(slurp(dir + "/" + n));
  const std::string meta(p.files.back().begin(), p.files.back().end());
  const size_t at = meta.find("journal_id ");
  if (at == std::string::npos) __builtin_trap();
  p.journal_id = std::stoull(meta.substr(at + 11, 16), nullptr, 16);
  return p;
}

// Recomputes the payload and header CRCs of every header-looking record.
void fix_checksums(std::vector<char>* chunk, uint64_t journal_id) {
  for (uint64_t off = 0; off + kHeader <= chunk->size(); off += kAlign) {
    char* h = chunk->data() + off;
    if (std::memcmp(h, kMagic, sizeof kMagic) != 0) continue;
    put_u64(h + 16, journal_id);
    const uint32_t payload = get_u32(h + 64);
    if (payload <= chunk->size() - off - kHeader) {
      put_u32(h + 68, crc32c(std::span(reinterpret_cast<const std::byte*>(h + kHeader), payload)));
    }
    put_u32(h + 12, 0);
    put_u32(h + 12, crc32c(std::span(reinterpret_cast<const std::byte*>(h), kHeader)));
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)log::init("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Pristine pristine = make_pristine();
  std::vector<std::vector<char>> files(pristine.files.begin(), pristine.files.end() - 1);  // not meta
  const bool fix = size > 0 && (data[0] & 1) != 0;
  size_t i = size > 0 ? 1 : 0;
  while (i + 4 <= size) {
    std::vector<char>& f = files[data[i] % files.size()];
    const size_t len = std::min<size_t>(data[i + 3], size - (i + 4));
    if (!f.empty()) {
      // Within the file: a chunk of another size is refused before recovery
      // looks at it (the unit tests cover that).
      const size_t offset = (data[i + 1] | (size_t{data[i + 2]} << 8)) % f.size();
      std::memcpy(f.data() + offset, data + i + 4, std::min(len, f.size() - offset));
    }
    i += 4 + len;
  }
  if (fix) {
    for (int c = 0; c < kChunks; ++c) fix_checksums(&files[c], pristine.journal_id);
  }
  const std::string dir = pristine.base + "/open";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  for (size_t f = 0; f < files.size(); ++f) spill(dir + "/" + pristine.names[f], files[f]);
  spill(dir + "/meta", pristine.files.back());

  auto opened = Journal::Open(options(dir));
  if (!opened.ok()) return 0;
  uint64_t previous = 0;
  for (const JournalRecord& r : opened->recovery.records) {
    if (r.wseq <= previous) __builtin_trap();  // oldest first, each once
    previous = r.wseq;
    if (r.nblocks == 0 || r.lba > UINT64_MAX / 4096 - r.nblocks) __builtin_trap();
    const bool data_record = r.state == ExtentState::kData;
    if (data_record ? r.data.size() != r.nblocks * 4096 : !r.data.empty()) __builtin_trap();
  }
  if (!opened->recovery.records.empty() && opened->recovery.newest_wseq < previous) __builtin_trap();
  return 0;
}
