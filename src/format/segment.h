// Segment objects: the immutable unit of data in object storage.
//
// A flush seals the write buffer into one segment and PUTs it at
// "segments/<seq as 16 hex digits>.seg". Sequence numbers only grow, so
// replaying segments in key order rebuilds the index (DESIGN invariant 1).
//
// Object layout (all integers little-endian):
//
//   [frame 0][frame 1]...[frame n-1][footer][trailer: 40 bytes]
//
//   frame   : up to kFrameBlocks blocks of raw data, compressed (lz4/zstd) or raw
//   footer  : "PBDSEGF1" u32 version u32 flags u64 seq u64 layer i64 created_ms
//             [version 2: u64 after_seq] [version 3: u64 prev_seq]
//             [version 4: u64 max_wseq u64 writer] u32 nframes u32 nentries
//             nframes x { u64 offset u32 stored_len u32 raw_len u32 crc32c u8 codec u8[3] }
//             nentries x { u64 lba u64 nblocks u32 frame u32 block_in_frame u8 state u8[7] }
//   trailer : u64 footer_offset u32 footer_len u32 footer_crc32c u32 version
//             u32 reserved u64 object_crc_of_trailer_fields "PBDSEGT1"
//
// An entry maps nblocks blocks starting at lba either to blocks of one frame
// (state kData) or to nothing (kZero: zeroed, kHole: trimmed). Entries are in
// the order they were written; within one segment they never overlap. Every
// frame's crc32c covers its stored bytes, so a read of one frame is verified
// without reading the rest of the object.
//
// Thread-safety: SegmentBuilder is single-threaded; parse functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/format/codec.h"
#include "src/format/extent_state.h"
#include "src/util/status.h"

namespace portalbd {

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint32_t kFrameBlocks = 16;  // 64 KiB frames
inline constexpr size_t kSegmentTrailerBytes = 40;
// Version 2 adds after_seq to the footer, version 3 prev_seq, version 4
// max_wseq and writer; older objects are still read (those fields are 0).
inline constexpr uint32_t kSegmentFormatVersion = 4;
inline constexpr uint32_t kNoFrame = UINT32_MAX;

std::string segment_key(uint64_t seq);
// Parses "segments/<16 hex>.seg"; false for anything else.
bool parse_segment_key(const std::string& key, uint64_t* seq);
// "checkpoints/<seq as 16 hex digits>.sqlite.zst": the index as of seq.
std::string checkpoint_key(uint64_t seq);
// The sequence a checkpoint key names; 0 for anything else.
uint64_t parse_checkpoint_key(const std::string& key);
// "roots/<seq as 16 hex digits>.json": the layers and roots as of seq.
std::string roots_record_key(uint64_t seq);
// The sequence a roots record key names; 0 for anything else.
uint64_t parse_roots_record_key(const std::string& key);

struct FrameRef {
  uint64_t offset = 0;      // byte offset of the frame in the segment object
  uint32_t stored_len = 0;  // bytes in the object
  uint32_t raw_len = 0;     // bytes once decoded (a multiple of kBlockSize)
  uint32_t crc = 0;         // crc32c of the stored bytes
  Codec codec = Codec::kNone;
};

struct SegmentEntry {
  uint64_t lba = 0;
  uint64_t nblocks = 0;
  uint32_t frame = kNoFrame;
  uint32_t block_in_frame = 0;
  ExtentState state = ExtentState::kData;
};

struct SegmentFooter {
  uint64_t seq = 0;
  uint64_t layer = 0;  // index layer the entries belong to
  int64_t created_unix_ms = 0;
  // The write segment this one was sealed behind: the newest buffer still
  // uncommitted when it was sealed, or 0 when every earlier one was
  // committed. With several uploads in flight a crash can store this segment
  // and not that one; replay then drops this one (and whatever follows it),
  // so a rebuild is always a prefix of the writes (Volume::replay_storage).
  uint64_t after_seq = 0;
  // Format 3: the write segment sealed before this one, committed or not (0:
  // the first, or a GC rewrite, which is not in the chain). Every write
  // segment names its predecessor, so replay finds a segment missing from
  // the middle of the log (Volume::replay_storage): a predecessor named with
  // after_seq == 0 was committed before this one was sealed, and its absence
  // is damage, not a crash state.
  uint64_t prev_seq = 0;
  // Format 4: the newest write sequence number (one per write request, see
  // FlushPipeline) whose blocks this segment holds; 0 for segments that hold
  // no new writes (GC rewrites, claims) and older formats. A journal replays
  // only records newer than the newest max_wseq in storage.
  uint64_t max_wseq = 0;
  // Format 4: the writer (a random id per journal, or per daemon start
  // without one) that stored it; 0 in older formats. A journal is replayed
  // only over storage whose newest segment its own writer stored.
  uint64_t writer = 0;
  uint32_t version = kSegmentFormatVersion;  // of the object it was parsed from
  std::vector<FrameRef> frames;
  std::vector<SegmentEntry> entries;
  uint64_t data_bytes() const;  // raw bytes of data blocks mapped
};

class SegmentBuilder {
 public:
  // prev_seq 0 with after_seq set: after_seq is the predecessor.
  SegmentBuilder(uint64_t seq, uint64_t layer, Codec codec, int64_t created_unix_ms, uint64_t after_seq = 0,
                 uint64_t prev_seq = 0);

  // Sizes the object buffer for about `raw_bytes` of data, so that appending
  // frames does not reallocate and copy what is already there. Optional.
  void reserve(uint64_t raw_bytes);
  // Builds the object in `buffer`'s memory (its contents are dropped, its
  // capacity kept): a finished object handed back for the next one, so the
  // next segment is written into memory already faulted in. Call before
  // reserve() and before adding anything.
  void reuse(std::vector<std::byte>&& buffer) {
    object_ = std::move(buffer);
    object_.clear();
  }
  // Adds whole blocks of data starting at block `lba`.
  // REQUIRES: data.size() is a positive multiple of kBlockSize.
  void add_data(uint64_t lba, std::span<const std::byte> data);
  // Adds a range that holds no data: kZero or kHole.
  void add_empty(uint64_t lba, uint64_t nblocks, ExtentState state);
  // Format 4: the newest write sequence number the segment holds, and who
  // stores it (SegmentFooter::max_wseq, writer).
  void set_writes(uint64_t max_wseq, uint64_t writer) {
    footer_.max_wseq = max_wseq;
    footer_.writer = writer;
  }
  // Seals the segment: the complete object bytes. The builder is spent after.
  std::vector<std::byte> finish();

  const SegmentFooter& footer() const { return footer_; }
  bool empty() const { return footer_.entries.empty(); }

 private:
  // Appends `raw` (one whole frame's bytes, or the last partial one) as the
  // next frame.
  void seal_frame(std::span<const std::byte> raw);

  Codec codec_;
  SegmentFooter footer_;
  std::vector<std::byte> object_;   // frames sealed so far
  std::vector<std::byte> pending_;  // raw bytes of the open frame
  // Frames stored raw in a row, the latest last. After one the next is
  // probed first (compress_frame); deep in a run only every
  // kProbeEveryRawFrames-th is (see seal_frame).
  uint64_t raw_run_ = 0;
};

// Inside a run of raw frames longer than this, a builder probes only every
// this many frames and stores the others raw without trying: on a volume
// of data that does not compress the probe was the largest cost of encoding
// a segment (a third of the uploading thread, see docs/performance.md
// "Sequential fill"). Data that compresses again after such a run is found
// within this many frames (8 x 64 KiB).
inline constexpr uint64_t kProbeEveryRawFrames = 8;

// Reads the trailer (the last kSegmentTrailerBytes of an object) and returns
// where the footer is. kCorruption when the trailer is not a segment trailer.
Status parse_segment_trailer(std::span<const std::byte> trailer, uint64_t* footer_offset, uint32_t* footer_len);
// Parses and verifies a footer (its crc is checked against the trailer's by
// parse_segment_object; this checks structure and bounds).
Result<SegmentFooter> parse_segment_footer(std::span<const std::byte> footer, uint64_t footer_offset);
// Parses a whole segment object: trailer, footer crc, footer.
Result<SegmentFooter> parse_segment_object(std::span<const std::byte> object);

// Verifies and decodes one frame's stored bytes into `out` (raw_len bytes).
Status decode_frame(const FrameRef& ref, std::span<const std::byte> stored, std::vector<std::byte>* out);
// The same into `out`, which must hold exactly ref.raw_len bytes.
Status decode_frame(const FrameRef& ref, std::span<const std::byte> stored, std::span<std::byte> out);
// Checks a stored frame's length and checksum without decoding it.
Status verify_frame(const FrameRef& ref, std::span<const std::byte> stored);

}  // namespace portalbd
