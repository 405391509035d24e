// Journal: the write-ahead log on local disk that lets a FLUSH return after
// one fdatasync instead of an object-store round trip (issue 20). Every write
// is appended here as a record carrying its write sequence number (wseq);
// sync() makes a prefix durable; release() says a prefix is in object storage
// so its space may be reused; Open() recovers what is still live after a
// crash. The journal knows nothing of volumes or segments: the caller assigns
// wseqs, decides what to replay and when to release.
//
// Files, in JournalOptions::dir (0700; files 0600):
//   meta          text, replaced atomically (write meta.tmp, fsync, rename,
//                 fsync dir):
//                   portalbd-journal 1          (format version)
//                   volume_uuid <uuid>
//                   writer_id <id>              (who owns the live records)
//                   journal_id <16 hex>         (random, in every record)
//                   chunk_bytes <n>
//                   chunk_count <n>
//                   crc32c <8 hex>              (of the lines above)
//   chunk-0000 .. chunk-<count-1>
//                 a ring of files of chunk_bytes each, written full of zeros
//                 before their first use (so later writes allocate nothing
//                 and an fdatasync logs no size or extent change), then
//                 reused in ring order forever. A new journal writes chunk 0
//                 at once and only reserves the others' blocks (fallocate);
//                 a thread of the Journal (the zeroer) writes each of them
//                 once the chunk before it is the head and a quarter full,
//                 so creating a 1 GiB journal costs one chunk's write, not
//                 the ring's, and a journal of markers writes no more.
//   start         56 bytes, a hint for Open (see "Opening"): where the chain
//                 of records above the on-disk release watermark begins.
//                 Written (pwrite, no fsync) when that watermark moves: by
//                 the append whose record carries a new one, and by close().
//
// A chunk holds records back to back from offset 0, each starting on a
// kAlign (512) byte boundary. A record is an 80-byte header, then the payload
// (kData: nblocks * 4096 bytes; kZero and kHole: none), then padding up to
// the next boundary. Header (little endian):
//     0  magic "PBDJREC1"           40  u64 nblocks
//     8  u16 format version (1)     48  u64 synced_wseq   (durable when written)
//    10  u8 kind (1 write, 2 pad,   56  u64 released_wseq (released when written)
//          3 marker)
//    11  u8 ExtentState             64  u32 payload bytes
//    12  u32 CRC32C of the header   68  u32 payload CRC32C
//        (this field as zero)       72  u64 reserved, 0
//    16  u64 journal_id
//    24  u64 wseq
//    32  u64 lba
// A marker (kind 3, no payload) stands for a write whose data the journal
// does not hold (a large write that goes to object storage directly; a FLUSH
// after it waits for its upload): it keeps the wseqs consecutive (J1) and
// replays as nothing. A record never straddles chunks: when the next one does not fit, the writer
// puts a pad record (kind 2, wseq = the chunk's last record, no payload) after
// the last record, fdatasyncs the chunk (so the pad's released_wseq is durable
// before any older record in the next chunk is overwritten), and moves on to
// the next chunk, which must be free. The last kAlign bytes of every chunk
// are kept for that pad, so the largest payload is max_payload_bytes().
//
// Invariants (the writer keeps them; Open checks them):
//   J1. Within one pass over a chunk ("lap"), its records' wseqs are
//       consecutive from offset 0. Bytes after the lap's last record are a
//       pad, zeros, or records of older laps (all with lower wseqs).
//   J2. Chunks are entered in ring order, each only once every record in it
//       is released; so the laps, read in ring order ending at the chunk
//       being written (the head), carry consecutive wseqs.
//   J3. Every record and pad carries released_wseq, the release watermark
//       when it was written; the largest one on disk, R, is at least every
//       wseq that was overwritten (the pad of J2 makes that durable first).
//       So every record with wseq in (R, newest] is still on disk.
// Recovery, the ring scan (Open without a usable start file) reads every
// chunk, follows each chunk's chain of J1 from offset 0, and links chains
// backwards from the head by J2. Live records are those of the linked run
// above R, oldest first. It then checks:
//   - the run reaches down to R + 1; otherwise live records are missing:
//     kCorruption naming the chunk and offset where its chain broke;
//   - no whole record (found by scanning every kAlign boundary past a break)
//     is newer than the run's newest record; if one is, a record in front of
//     it is damaged: kCorruption naming file and offset. Never skipped.
//   - a break in the head chunk with nothing newer after it is a torn tail (a
//     crash mid-append): cut there, logged, reported in JournalRecovery.
// Released records are not tracked on disk except through J3: records
// released after the last append may be returned again; the caller filters
// them by wseq (it knows what storage holds).
//
// Opening (issue 20): the ring scan reads capacity_bytes (0.3 s for 1 GiB), so
// Open first follows the start file instead. Start = (chunk, offset,
// prev_wseq, released_wseq): the position of the oldest record above the
// watermark the newest record on disk carries (or where the next append
// goes), the wseq it follows, and that watermark. It may be stale (a crash
// before its pwrite reached disk) but is never ahead: it is written after the
// record carrying its watermark. Open reads the kHeaderBytes at offset 0 of
// every chunk, then follows the chain from the start forward (J1 within a
// chunk; J2 into the next chunk when its first record carries on, also
// across a gap the watermark covers, as after release() moved the sequence),
// reading each record's header and payload, to the first thing that does not
// carry on. Records never straddle chunks (J1, J2), so what comes after the
// chain's last record in this lap lies in the rest of its chunk or, once the
// writer padded that chunk (and synced it) and went on, in the next chunk.
// Open looks there for a header of this journal newer than the chain's end:
// in the rest of the chunk the chain ends in, however far (at most
// chunk_bytes); in the next chunk, all of it when the chain ends in its pad
// and the next chunk's first header, where the writer's first record there
// would be, is none (never written, or wiped), else its first
// kScanPastEndBytes (1 MiB); and at every other chunk's first header. It
// falls back to the ring scan, whose verdicts (kCorruption, torn tail) then
// stand exactly as above, when:
//   - the start file is missing (a journal of an older portalbd), torn, of
//     another journal_id, or its chunk was rewritten since (first header
//     newer than prev_wseq: the ring went round);
//   - the chain ends at a header that fails its checks but was ours (magic
//     or journal_id in place), a record out of sequence, or a payload that
//     fails its checksum: damage or a torn tail, which the scan tells apart;
//   - a record newer than the chain's end is found where it looked.
// So a damaged record after the chain's end is kCorruption, as in the ring
// scan, whatever the damage wiped and however large the record, when a newer
// record follows it in its chunk or the next (a record that fills its chunk
// has the next chunk's first record, or its own pad, after it); so is a newer
// record an out-of-order power loss kept anywhere in the chunk the chain
// ends in. Open reads what lies above the watermark, the rest of the chunk
// it ends in, 1 MiB of the next (all of it, zeros, after a clean close of a
// journal whose ring has not gone round) and one header per chunk: at most
// about two chunks past the live records, not capacity_bytes. What it does
// not look at, where the ring scan would say kCorruption: a newer record
// more than kScanPastEndBytes into the next chunk while that chunk's first
// header is still an older lap's (an out-of-order power loss kept writes of
// the chunk's new lap but not its first record: none of them was synced, a
// sync would have kept the first, so none was acknowledged and cutting
// there loses nothing answered); and newer records behind two damaged ones
// (the first record and the pad of the next chunk, or the pad ending the
// chain and the next chunk's first record).
//
// What a crash can cost: records not yet covered by a successful sync(). A
// damaged last record cannot be told from a torn one, so it is cut (logged).
// On power loss a disk may persist an unsynced record but not the one before
// it; Open then reports kCorruption (the error says whether the damaged
// record was known synced) rather than guess: the operator decides (Discard).
//
// Sequencing: appends carry consecutive wseqs. After Open (which recovers up
// to newest_wseq) and before the first append, the caller calls
// release(S), S = the highest wseq already in object storage; the next
// append must then be max(S, newest_wseq) + 1. append() of a later wseq
// waits for its turn (other threads appending the ones in between), so
// callers may assign wseqs under their own lock and append outside it.
//
// Writers: meta's writer_id names who owns the live records. Open reports it
// (JournalRecovery::previous_writer_id) and leaves it; the new writer's first
// append rewrites meta with its own id, adopting the records it recovered.
// So a caller that will not replay another writer's records Discards the
// journal before appending, and a crash in between still names the old
// writer.
//
// Failure: once a record write or an fdatasync fails, the journal stays failed
// (append and sync return that error): after a failed fdatasync the kernel
// may have dropped the dirty pages ("fsyncgate"), so nothing written since
// the last good sync can be trusted. Reopen to recover. (A failed meta
// rewrite at the first append is not sticky: nothing was written; retry.)
//
// Shutdown: close() records the release watermark on disk (a pad after the
// newest record), so the next Open returns only unreleased records; without
// it the files are as a crash leaves them, which is always safe.
//
// Thread-safety: append, sync, release, stats and close are safe
// concurrently. One Mutex, mu_, guards the state. File I/O runs outside it:
// record and pad writes (and the meta rewrite) by the one append that holds
// the turn (turn_taken_, for wseq next_wseq_), fdatasyncs of sync() by the one
// leader (sync_running_). Order: the turn, then mu_ (a turn holder takes and
// drops mu_ around its I/O; nobody waits for the turn while holding mu_
// except on turn_cv_). start_mu_ orders the start file's writes (by the
// append or close that moved the watermark, after it drops mu_); it is never
// held with mu_. Two Journals never share a directory: Open takes an
// flock on it (kBusy), so neither do two processes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "src/format/extent_state.h"
#include "src/util/fd.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd {

struct JournalOptions {
  std::string dir;
  uint64_t capacity_bytes = 1ull << 30;  // rounded down to whole chunks; at least 2
  uint64_t chunk_bytes = 64ull << 20;    // a multiple of 4096, at least 16 KiB
  std::string volume_uuid;               // required; a journal of another volume is refused
  std::string writer_id;                 // recorded in meta from this writer's first append
  // Given the writer id meta names (when it differs from writer_id): true to
  // go on as that writer, so meta keeps naming it. Optional.
  std::function<bool(const std::string& previous_writer_id)> adopt_previous_writer;
  // Test seam (a fault-injection decorator over the file calls): called,
  // from any thread, before each pwrite ("pwrite") and fdatasync
  // ("fdatasync") of a chunk by append, sync and chunk switches; a non-zero
  // return is the errno that call fails with instead of running. Open's own
  // I/O and meta writes are not covered.
  std::function<int(const char* op)> inject_error;
};

struct JournalRecord {
  uint64_t wseq = 0;
  uint64_t lba = 0;
  uint64_t nblocks = 0;
  ExtentState state = ExtentState::kData;
  std::vector<std::byte> data;  // kData only: nblocks * 4096 bytes
};

// What Open found.
struct JournalRecovery {
  std::vector<JournalRecord> records;  // live records, oldest first, consecutive wseqs but for markers
  std::string previous_writer_id;      // meta's writer_id ("" for a new journal)
  uint64_t newest_wseq = 0;            // newest whole record on disk, released or not (0: none)
  uint64_t released_wseq = 0;          // R of J3
  std::string torn_tail;               // "" or "chunk-0002 offset 4096: payload checksum mismatch"
  bool created = false;                // a new journal (none, or its meta was missing)
  uint64_t chunk_bytes_read = 0;       // what Open read of the chunk files (see "Opening")
  bool read_whole_ring = false;        // the start file did not settle recovery: Open read every chunk
};

struct JournalStats {
  uint64_t capacity_bytes = 0;
  uint64_t chunk_bytes = 0;
  uint64_t used_bytes = 0;        // bytes of the chunks not free (the head up to its write offset)
  uint64_t live_records = 0;      // appended or recovered, not released
  uint64_t oldest_live_wseq = 0;  // 0 when none is live
  std::chrono::steady_clock::time_point oldest_live_appended;  // recovered records: Open's time
  uint64_t appended_wseq = 0;                                  // newest appended (or recovered)
  uint64_t synced_wseq = 0;                                    // newest known durable
  uint64_t released_wseq = 0;
  uint64_t syncs = 0;          // sync() calls
  uint64_t fdatasyncs = 0;     // fdatasync calls by sync() leaders and chunk switches
  uint64_t chunks_zeroed = 0;  // chunks of a new journal the zeroer wrote ahead of the head
  bool failed = false;         // a write or fdatasync failed: see "Failure"
};

class Journal;
struct OpenedJournal {
  std::unique_ptr<Journal> journal;
  JournalRecovery recovery;
};

class Journal {
 public:
  static constexpr uint64_t kAlign = 512;
  static constexpr uint64_t kHeaderBytes = 80;
  static constexpr uint64_t kBlockBytes = 4096;
  static constexpr uint32_t kFormatVersion = 1;

  // Opens the journal in opts.dir, creating it (and the dir) when absent, and
  // recovers it (see "Recovery"). kCorruption for damage in live records or
  // an unreadable meta; kInvalidArgument for a journal of another volume_uuid
  // or bad options; kBusy when another Journal holds the dir; kIOError when
  // the disk fails. When meta's geometry differs from opts, the journal is
  // laid out anew if nothing in it is live, else kept as it is (logged).
  static Result<OpenedJournal> Open(JournalOptions opts);

  // Removes the journal's files (meta first, so a crash part-way leaves a
  // directory that Open recreates); leaves the directory. kBusy while a
  // Journal has it open.
  static Status Discard(const std::string& dir);

  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends one record; not durable until sync(). REQUIRES: data is
  // nblocks * 4096 bytes for kData and empty otherwise, nblocks >= 1, and
  // data.size() <= max_payload_bytes() (larger writes are split by the
  // caller). Waits for its turn (see "Sequencing") and, while the journal is
  // full, for release() to free a chunk; kBusy when `deadline` passes first
  // (nothing written: the same wseq may be appended again).
  // A wseq that release() already covered (storage committed it before its
  // append came) is OK at once, with nothing written.
  // kInvalidArgument for a wseq already appended or a malformed record;
  // kIOError when the write fails (the journal is failed from then on).
  Status append(uint64_t wseq, uint64_t lba, uint64_t nblocks, ExtentState state, std::span<const std::byte> data,
                std::chrono::steady_clock::time_point deadline) EXCLUDES(mu_);

  // Appends a marker for write `wseq` (see the format above): as append(),
  // with no data. Open returns no record for it.
  Status append_marker(uint64_t wseq, uint64_t lba, uint64_t nblocks, std::chrono::steady_clock::time_point deadline)
      EXCLUDES(mu_);

  // Makes every record up to `wseq` durable (REQUIRES: appended, or
  // released: then OK at once unless the journal failed). Group
  // commit: one caller at a time (the leader) fdatasyncs the chunks written
  // since the last sync, covering everything appended when it started;
  // callers whose wseq that covers wait and return with it. kIOError when an
  // fdatasync fails, then and forever after.
  Status sync(uint64_t wseq) EXCLUDES(mu_);

  // Every record with wseq <= upto is in object storage: chunks holding only
  // such records (not the head) become free, and appends waiting for space
  // go on. With upto beyond the newest append, also moves the sequence: the
  // next append must be upto + 1 (appends of wseqs <= upto still to come
  // return OK, writing nothing), unless an append holds its turn now (then
  // the sequence goes on from it, recording released records).
  void release(uint64_t upto) EXCLUDES(mu_);

  JournalStats stats() const EXCLUDES(mu_);
  // The parts of stats() the write and FLUSH paths ask for on every call,
  // without building all of it.
  uint64_t appended_wseq() const EXCLUDES(mu_);
  uint64_t released_wseq() const EXCLUDES(mu_);
  // When the oldest record not yet released was appended; nullopt when none is.
  std::optional<std::chrono::steady_clock::time_point> oldest_live_appended() const EXCLUDES(mu_);

  // Clean shutdown (optional): writes a pad after the newest record carrying
  // the release watermark (J3), so that the next Open returns no released
  // record and, when none is live, can apply a new geometry. Later appends
  // and syncs return kCancelled. Without close(), the files are as a crash
  // leaves them: everything synced is recovered.
  Status close() EXCLUDES(mu_);

  // The largest payload one record can hold: chunk_bytes less the header and
  // the pad's reserve, in whole blocks.
  uint64_t max_payload_bytes() const { return max_payload_bytes_; }

 private:
  struct ChunkState {
    bool in_use = false;      // holds live records or is the head
    uint64_t first_wseq = 0;  // of the current lap (0: none yet)
    uint64_t last_wseq = 0;
    uint64_t write_offset = 0;  // end of the lap's last record
  };
  struct LiveRecord {
    uint64_t wseq;
    std::chrono::steady_clock::time_point appended;
  };
  // Where a record (or marker) is, for the start file.
  struct RecordPosition {
    uint64_t wseq;
    uint64_t chunk;
    uint64_t offset;
  };

  static constexpr uint64_t kNoChunk = UINT64_MAX;

  // append() and append_marker() once the record is built: waits for the
  // turn, writes header and payload at the head.
  Status append_record(uint8_t kind, uint8_t state, uint64_t wseq, uint64_t lba, uint64_t nblocks,
                       std::span<const std::byte> data, std::chrono::steady_clock::time_point deadline) EXCLUDES(mu_);

  Journal(JournalOptions opts, UniqueFd dir_fd, std::vector<UniqueFd> chunk_fds, UniqueFd start_fd, uint64_t journal_id,
          bool claim_pending, std::vector<bool> unwritten);
  // The zeroer's body: while chunks of a new journal are unwritten, writes
  // zeros over the one after the head once it is free, then waits for the
  // head to move. Ends at close(), at failure, or when none is left.
  void zero_ahead() EXCLUDES(mu_);
  // Its loop; drops mu_ around each chunk's I/O (through mu_ itself, as
  // switch_chunk does).
  void zero_ahead_locked(MutexLock& lock) REQUIRES(mu_);
  // Waits (until deadline) for the chunk after the head to be free, then pads
  // and syncs the head and makes the next chunk the head. REQUIRES: the
  // append turn and `lock` holding mu_; drops mu_ for the pad's I/O (through
  // mu_ itself: clang cannot follow a MutexLock into a function).
  Status switch_chunk(MutexLock& lock, std::chrono::steady_clock::time_point deadline) REQUIRES(mu_);
  Status wait_for_next_chunk(MutexLock& lock, std::chrono::steady_clock::time_point deadline) REQUIRES(mu_);
  // The pad that ends the head chunk's chain, carrying the watermarks (J3).
  std::vector<std::byte> pad_locked() const REQUIRES(mu_);
  Status write_pad(uint64_t chunk, uint64_t offset, std::span<const std::byte> pad) const;
  void free_released_chunks() REQUIRES(mu_);
  // A record or pad carrying release watermark `released` was written: the
  // records it covers leave disk_positions_. Returns whether the start moved.
  bool note_disk_released(uint64_t released) REQUIRES(mu_);
  // The start (see "Opening"): the oldest record above disk_released_, or,
  // when none is, the end of the head's chain, where the next append goes.
  // Called by append and close only, when no chunk switch is under way.
  void start_locked(uint64_t* chunk, uint64_t* offset, uint64_t* prev_wseq) const REQUIRES(mu_);
  // Writes the start file, unless a later one was written already. Outside
  // mu_ (start_mu_ is never held with it).
  void write_start(uint64_t chunk, uint64_t offset, uint64_t prev_wseq, uint64_t released_wseq)
      EXCLUDES(mu_, start_mu_);
  Status fail(Status st) REQUIRES(mu_);
  int inject(const char* op) const;
  Status write_meta_claim();  // runs in the append turn, outside mu_
  uint64_t chunk_index_after(uint64_t c) const { return (c + 1) % chunk_fds_.size(); }

  const JournalOptions opts_;
  const UniqueFd dir_fd_;                  // holds the flock; fsync of directory entries
  const std::vector<UniqueFd> chunk_fds_;  // open for the Journal's life
  const UniqueFd start_fd_;                // the start file
  const uint64_t journal_id_;
  const uint64_t max_payload_bytes_;

  mutable Mutex mu_;
  CondVar turn_cv_;    // next_wseq_ moved, or failed_
  CondVar space_cv_;   // a chunk was freed, or failed_
  CondVar synced_cv_;  // a sync round ended
  Status failed_ GUARDED_BY(mu_);
  bool claim_pending_ GUARDED_BY(mu_);  // meta still names the previous writer
  std::vector<ChunkState> chunks_ GUARDED_BY(mu_);
  uint64_t head_ GUARDED_BY(mu_) = 0;        // chunk being written
  uint64_t next_wseq_ GUARDED_BY(mu_) = 1;   // the only wseq append accepts now
  bool turn_taken_ GUARDED_BY(mu_) = false;  // an append of next_wseq_ is under way
  bool closed_ GUARDED_BY(mu_) = false;
  uint64_t appended_wseq_ GUARDED_BY(mu_) = 0;
  uint64_t synced_wseq_ GUARDED_BY(mu_) = 0;
  uint64_t released_wseq_ GUARDED_BY(mu_) = 0;
  // Wseqs the sequence moved past without their append (release() beyond the
  // newest append, and Open's gap up to the watermark), newest last, at most
  // kMaxSkippedRuns: their appends may still come, late and in any order
  // with appends of later wseqs, and are no-ops. Any other wseq below
  // next_wseq_ was appended, and appending it again is refused.
  struct WseqRun {
    uint64_t first;
    uint64_t last;
  };
  static constexpr size_t kMaxSkippedRuns = 1024;
  std::deque<WseqRun> skipped_ GUARDED_BY(mu_);
  void note_skipped(uint64_t first, uint64_t last) REQUIRES(mu_);
  bool was_skipped(uint64_t wseq) const REQUIRES(mu_);
  std::deque<LiveRecord> live_ GUARDED_BY(mu_);
  // The release watermark the newest record or pad on disk carries (J3's R
  // as Open will find it), and where the records above it are, oldest first.
  uint64_t disk_released_ GUARDED_BY(mu_) = 0;
  std::deque<RecordPosition> disk_positions_ GUARDED_BY(mu_);
  std::vector<bool> dirty_ GUARDED_BY(mu_);  // chunk written since the last sync round took it
  bool sync_running_ GUARDED_BY(mu_) = false;
  uint64_t syncs_ GUARDED_BY(mu_) = 0;
  uint64_t fdatasyncs_ GUARDED_BY(mu_) = 0;
  // The zeroer (see the format above). A chunk switch into the chunk being
  // zeroed waits for it; one into an unwritten chunk the zeroer has not
  // reached takes it as it is (correct, only its fdatasyncs are slower).
  // The zeroer starts on the next chunk once the head is a quarter full:
  // writes that only leave markers (large ones) never make it write zeros.
  uint64_t zero_start_offset() const { return opts_.chunk_bytes / 4; }
  std::vector<bool> unwritten_ GUARDED_BY(mu_);
  bool zero_pending_ GUARDED_BY(mu_) = false;  // the zeroer runs
  uint64_t zeroing_ GUARDED_BY(mu_) = kNoChunk;
  uint64_t chunks_zeroed_ GUARDED_BY(mu_) = 0;
  bool stop_zeroer_ GUARDED_BY(mu_) = false;
  CondVar zero_cv_;  // the head moved, a chunk was zeroed, or stop
  std::thread zeroer_;

  // The start file's writes (release(), outside mu_; never held with mu_).
  Mutex start_mu_;
  uint64_t start_written_released_ GUARDED_BY(start_mu_) = 0;  // released_wseq of the last start written
  bool start_write_failed_ GUARDED_BY(start_mu_) = false;      // logged once
};

}  // namespace portalbd
