// Reading the journal's ring back at Open (see "Recovery" and "Opening" in
// journal.h): from the start file when it settles where the live records
// begin, else by reading every chunk, following each chunk's chain (J1),
// linking the chains across chunks (J2), finding damage and a torn tail, and
// reading the live records' payloads. Private to journal_format.cc, whose
// open_files() calls recover(); nothing else includes it.
// Thread-safety: plain functions over the files they are given.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/engine/journal.h"
#include "src/engine/journal_format.h"
#include "src/util/fd.h"
#include "src/util/status.h"

namespace portalbd::journal_format {

// Reads of the chunk files, counted (JournalRecovery::chunk_bytes_read).
struct ChunkReader {
  const std::string& dir;
  const std::vector<UniqueFd>& fds;
  uint64_t bytes = 0;
  Status read(uint64_t c, uint64_t offset, std::span<std::byte> out) {
    bytes += out.size();
    return pread_all(fds[c].get(), out, offset).With("read " + dir + "/" + chunk_name(c));
  }
};

// What recovery hands open_files (and Open the new Journal).
struct Recovered {
  JournalRecovery report;
  uint64_t head = 0;
  std::vector<uint64_t> run;           // chunks holding the linked run, oldest first (ends at head)
  std::vector<RecoveredChunk> chunks;  // the run's chunks, by either way
  std::vector<RecordAt> record_at;     // parallel to report.records
  LiveStart start;                     // for the start file: the first live record, or where appends go on
};

// Recovers the journal whose meta is `meta` through `rd`: from the start
// file when it checks, else by reading and checking every chunk, then the
// live records' payloads. Damage that could hide an answered write is
// kCorruption naming the file and offset; a torn tail is cut and reported
// (report.torn_tail).
Result<Recovered> recover(ChunkReader& rd, const Meta& meta);

}  // namespace portalbd::journal_format
