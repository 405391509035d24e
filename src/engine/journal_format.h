// The on-disk side of the Journal (journal.h): record headers and their
// checksums, the meta and start files, the ring of chunk files, and what Open
// reads back from them (the live records under J1-J3, see "Opening"). The
// format and the invariants are drawn in journal.h; this header is private
// to journal.cc (the writer), journal_format.cc (encoding, creating,
// discarding) and journal_recovery.cc (reading the ring back at Open):
// nothing else includes it.
// Thread-safety: plain functions over the files they are given; the Journal
// serialises its own calls (see journal.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "src/engine/journal.h"
#include "src/util/fd.h"
#include "src/util/status.h"

namespace portalbd::journal_format {

constexpr uint8_t kKindWrite = 1;
constexpr uint8_t kKindPad = 2;
constexpr uint8_t kKindMarker = 3;  // a write whose data went to storage directly

// "chunk-0003": the file name of chunk i in the journal's dir.
std::string chunk_name(uint64_t i);

// A record's (or pad's) 80-byte header; see journal.h for the layout.
struct Header {
  uint8_t kind = kKindWrite;
  uint8_t state = 0;
  uint64_t journal_id = 0;
  uint64_t wseq = 0;
  uint64_t lba = 0;
  uint64_t nblocks = 0;
  uint64_t synced_wseq = 0;
  uint64_t released_wseq = 0;
  uint32_t payload_bytes = 0;
  uint32_t payload_crc = 0;
};

// Bytes the record takes in its chunk: header and payload, padded to kAlign.
uint64_t record_bytes(const Header& h);
// The header's kHeaderBytes bytes, its CRC32C filled in.
std::vector<std::byte> encode_header(const Header& h);

// Parses the record header at p (`avail` bytes to the end of its chunk;
// only the header's kHeaderBytes need be at p). Returns "" and fills *h for
// a well-formed header of this journal, else why not. *has_magic: whether
// it at least starts with the record magic.
std::string parse_header(const std::byte* p, uint64_t avail, uint64_t journal_id, Header* h, bool* has_magic);
// "" when the payload matches the header's checksum, else why not.
std::string check_payload(const Header& h, std::span<const std::byte> payload);
// parse_header, then the payload's checksum: "" for a whole record.
std::string parse_record(const std::byte* p, uint64_t avail, uint64_t journal_id, Header* h, bool* has_magic);
// A header that fails to parse but was one once (its magic or its
// journal_id is there): damage, or a record torn mid-write.
bool looks_like_ours(const std::byte* p, uint64_t journal_id);

// The meta file's fields.
struct Meta {
  uint32_t version = Journal::kFormatVersion;
  std::string volume_uuid;
  std::string writer_id;
  uint64_t journal_id = 0;
  uint64_t chunk_bytes = 0;
  uint64_t chunk_count = 0;
};

// Replaces dir/meta atomically: meta.tmp, fsync, rename over meta, fsync of
// the directory (dir_fd).
Status write_meta(const std::string& dir, int dir_fd, const Meta& m);

// One chunk of the live run Open found: the state of its current lap.
struct RecoveredChunk {
  uint64_t index = 0;
  uint64_t first_wseq = 0;
  uint64_t last_wseq = 0;
  uint64_t end_offset = 0;  // where the lap's last record ends
};

// The "start" file (see "Opening" in journal.h): where the chain of records
// above the release watermark on disk (J3's R) begins. A hint: written
// without fsync, it may be stale (behind) but is never ahead, and Open checks
// it against the chunks before trusting it.
struct LiveStart {
  uint64_t chunk = 0;
  uint64_t offset = 0;         // of the oldest record above R, or where the next append goes
  uint64_t prev_wseq = 0;      // the wseq the record there follows (J1/J2)
  uint64_t released_wseq = 0;  // R, as the newest record (or pad) on disk carries it
};

// Writes `start` over the start file (pwrite, no fsync: see LiveStart).
Status write_start(int fd, uint64_t journal_id, const LiveStart& start);
// The start file in dir, when it is there, whole and of this journal.
std::optional<LiveStart> read_start(const std::string& dir, uint64_t journal_id);

// Where a live record Open returned sits (parallel to JournalRecovery::records).
struct RecordAt {
  uint64_t chunk = 0;
  uint64_t offset = 0;
};

// What open_files found in JournalOptions::dir, or made there.
struct OpenedFiles {
  UniqueFd dir_fd;                  // holds the flock on the dir
  std::vector<UniqueFd> chunk_fds;  // chunk-0000 .. in ring order
  Meta meta;                        // as on disk (its geometry wins over the options' while records are live)
  JournalRecovery report;
  uint64_t head = 0;                // the chunk ending the run (meaningful when run is not empty)
  std::vector<RecoveredChunk> run;  // chunks holding the linked run, oldest first, ending at head
  std::vector<RecordAt> record_at;  // where each of report.records is
  UniqueFd start_fd;                // the start file, written with the run's start already
  // Chunks of a journal created now whose blocks are reserved but not yet
  // written (they read as zeros): the writer zeroes them ahead of the head.
  // Empty for a journal that existed.
  std::vector<bool> unwritten;
};

// Writes chunk_bytes of zeros over a chunk file and fdatasyncs it, so later
// appends overwrite written blocks (an fdatasync then logs no extent change).
Status zero_chunk(int fd, const std::string& path, uint64_t chunk_bytes);

// Journal::Open's file work: checks opts, creates (0700) and locks the dir,
// reads meta and recovers the chunks (see "Recovery" in journal.h), or lays
// out a new journal when there is none, or none live under a new geometry.
// Errors as Journal::Open's.
Result<OpenedFiles> open_files(const JournalOptions& opts);

}  // namespace portalbd::journal_format
