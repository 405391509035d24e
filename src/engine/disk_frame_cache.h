// DiskFrameCache: stored (encoded) segment frames kept on local disk, so a
// read the memory FrameCache misses, and every read after a restart, costs a
// pread instead of a GET (issue 21). Only worth it for a remote store
// (s3://): file:// already is local disk, memory:// is memory.
//
// What is kept: a frame's bytes exactly as the store holds them (lz4/zstd or
// raw), keyed by (segment seq, frame offset, stored_len, crc32c). The crc in
// the key is the frame's content checksum from the segment footer, so a
// segment key that storage ever holds with other contents (a seq reused
// after a crash dropped an uncommitted segment, another writer's object)
// names other cache entries; and every get() verifies the bytes it read
// against that crc before returning them. A frame that fails is dropped
// (logged at warn, counted in crc_drops) and reported as a miss, so the
// caller fetches it from the store again: a cached frame is never served
// unverified.
//
// Layout: two files in `dir`, opened once.
//   frames  slot i at i * kSlotBytes: one frame's stored bytes (a frame is at
//           most 64 KiB raw, and the codec stores a frame raw when it does
//           not shrink, so it always fits). Sparse: unused slots cost nothing.
//   slots   a 4 KiB header (magic, version, slot size, a hash of the volume's
//           identity: storage URL and uuid; crc32c) then one 32-byte record
//           per slot: { u64 seq, u64 offset, u32 stored_len, u32 crc,
//           u32 magic, u32 crc32c of the 28 bytes before }.
// Why slots in one file and not a file per frame: a hit is one pread and an
// insert two pwrites, on two descriptors held open, instead of open + read +
// close per hit and create + write + rename per insert (and a directory tree
// of up to a million files for 64 GiB); a restart reads the records in one
// sequential pass instead of listing that tree. The cost: a compressed frame
// still takes a whole 64 KiB slot, so capacity is counted in slots.
//
// Crash safety (kill -9, power loss): nothing is fsynced. An insert writes
// the frame, then its record; a record whose own crc fails is a free slot at
// reload, and a record whose frame was torn or never reached the disk fails
// the frame crc at its first get() and is dropped. A different identity or
// slot size in the header (another volume, another format) empties the cache.
//
// Eviction: segmented LRU, scan resistant. A new frame enters a probation
// list; a hit there promotes it to the protected list (at most 80% of the
// slots; its least recent entry is demoted back to probation's head). Victims
// come from probation's tail, so a one-pass scan of cold data only cycles
// probation and leaves the frames read twice alone. After a restart every
// reloaded frame starts in probation.
//
// Uploaded segments (put_object) are written by one background thread of
// the cache's own, not by the upload that stored them: a 64 MiB segment is
// 1024 frames, and writing them on each upload thread made the segment's
// commit (so the FLUSH waiting on it) wait for them, with the uploads of
// other segments fighting over the file's lock. Until the writer reaches a
// frame, get() serves it from the object itself, so a read soon after a
// write still costs no GET. At most Options::pending_bytes of objects wait;
// beyond that an object is not kept (counted in skipped). The destructor writes
// what is queued before it returns, so a clean stop keeps every frame.
//
// Thread-safety: every method is safe to call concurrently. One mutex (a
// leaf lock) guards the in-memory index and is never held across disk I/O: a
// get() notes the slot's generation, reads unlocked, and discards what it
// read if the slot was reassigned meanwhile; a put() claims a slot (taking
// it out of both lists), writes unlocked, and publishes the entry after.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "src/format/segment.h"
#include "src/util/fd.h"
#include "src/util/mutex.h"
#include "src/util/status.h"

namespace portalbd {

struct DiskFrameCacheStats {
  uint64_t capacity_bytes = 0;  // slots * kSlotBytes
  uint64_t bytes = 0;           // stored bytes of the frames held
  uint64_t frames = 0;
  uint64_t hits = 0, misses = 0;
  uint64_t inserts = 0, evictions = 0;
  uint64_t dropped = 0;        // frames of segments GC deleted (drop_segments)
  uint64_t crc_drops = 0;      // cached frames that failed their crc: dropped, refetched
  uint64_t io_errors = 0;      // a pread or pwrite of the cache failed (a miss, or nothing cached)
  uint64_t skipped = 0;        // frames not kept: the writer was Options::pending_bytes behind
  uint64_t pending_bytes = 0;  // bytes of objects queued for the writer thread now (put_object)
};

class DiskFrameCache {
 public:
  static constexpr uint64_t kSlotBytes = uint64_t{kFrameBlocks} * kBlockSize;
  // Uploaded objects waiting for the writer thread, at most (put_object),
  // by default: two segments of the default size (64 MiB of blocks each),
  // with room for what their objects add (frame headers, lz4's worst case
  // on incompressible data, the footer; a last write may also run a segment
  // past 64 MiB). At exactly 128 MiB a second full segment never fitted.
  static constexpr uint64_t kPendingBytes = 2 * (68ull << 20);

  struct Options {
    std::string dir;              // created if missing
    uint64_t capacity_bytes = 0;  // rounded down to whole slots; at least one slot
    // Names the volume (storage URL and uuid): a cache left by another one
    // is emptied at open.
    std::string identity;
    // put_object() keeps no more object bytes than this waiting for the
    // writer thread (one object always may wait, whatever its size).
    uint64_t pending_bytes = kPendingBytes;
  };

  // Opens the cache in options.dir, reloading the frames a previous run
  // left. kInvalidArgument for a capacity below one slot; kIOError when the
  // directory or files cannot be made, or another process holds them.
  static Result<std::unique_ptr<DiskFrameCache>> Open(const Options& options);
  // Writes what put_object() queued, then stops the writer thread.
  ~DiskFrameCache();
  DiskFrameCache(const DiskFrameCache&) = delete;
  DiskFrameCache& operator=(const DiskFrameCache&) = delete;

  // The stored bytes of frame `ref` of segment `seq`, read from disk and
  // verified against ref.crc, in *out; false when not cached (or dropped now
  // for a bad crc, or the read failed).
  bool get(uint64_t seq, const FrameRef& ref, std::vector<std::byte>* out) EXCLUDES(mu_);
  // get() into `out` (ref.stored_len bytes), only if the kernel holds the
  // slot's pages (preadv2 RWF_NOWAIT); false, counted as nothing, when it
  // would have to read the disk.
  bool get_cached(uint64_t seq, const FrameRef& ref, std::span<std::byte> out) EXCLUDES(mu_);
  // Keeps `stored` (the frame's bytes as fetched) for frame `ref` of segment
  // `seq`, evicting as needed. Does nothing when it is already cached or
  // being inserted, too large for a slot, or does not match ref.crc.
  void put(uint64_t seq, const FrameRef& ref, std::span<const std::byte> stored) EXCLUDES(mu_);

  // Keeps `frames` of segment `seq`, as put() would, but on the writer
  // thread: returns at once. `object` holds the segment's stored bytes from
  // offset `base` on (the whole segment as uploaded: 0; a ranged GET: where
  // it began). Until they are written, get() and get_cached() serve the
  // frames from `object`. Nothing is kept when Options::pending_bytes of
  // objects wait already.
  void put_object(uint64_t seq, std::shared_ptr<const std::vector<std::byte>> object, std::vector<FrameRef> frames,
                  uint64_t base = 0) EXCLUDES(mu_);
  // Returns once every object put_object() was given so far is written (or
  // dropped).
  void settle() EXCLUDES(mu_);

  // Drops every frame of the segments in `seqs` (GC deleted them), records
  // included, so their slots are free at once instead of holding dead data
  // until eviction reaches them (also across a restart). Returns how many
  // frames it dropped. One pass over the index, however many segments.
  uint64_t drop_segments(const std::unordered_set<uint64_t>& seqs) EXCLUDES(mu_);

  DiskFrameCacheStats stats() const EXCLUDES(mu_);
  const std::string& dir() const { return dir_; }

 private:
  // get() and get_cached(): `out` is ref.stored_len bytes.
  bool read(uint64_t seq, const FrameRef& ref, std::span<std::byte> out, bool cached_only) EXCLUDES(mu_);
  struct Key {
    uint64_t seq = 0, offset = 0;
    uint32_t stored_len = 0, crc = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()((k.seq * 0x9E3779B97F4A7C15ull) ^ k.offset ^ (uint64_t{k.crc} << 32));
    }
  };
  struct Entry {
    uint32_t slot = 0;
    bool protected_ = false;
    std::list<Key>::iterator pos;  // in probation_ or protected_
  };

  DiskFrameCache(std::string dir, uint32_t slots, uint64_t pending_max, UniqueFd frames, UniqueFd records);
  static Key key_of(uint64_t seq, const FrameRef& ref) { return {seq, ref.offset, ref.stored_len, ref.crc}; }
  // Loads the records a previous run left; slots without one become free.
  Status reload() EXCLUDES(mu_);
  // Takes `key` out of the lists and the map (by value: it may be the map's own); its slot is not freed.
  void unlink_locked(Key key, Entry& entry) REQUIRES(mu_);
  // A hit in probation moves to protected (demoting protected's tail when full).
  void touch_locked(const Key& key, Entry& entry) REQUIRES(mu_);
  // A slot to write a new frame into: a free one, or the least valuable
  // entry's, evicted. Not in any list until published. ~0u: none (every
  // slot is being written or read into right now).
  uint32_t claim_slot_locked() REQUIRES(mu_);
  // Overwrites slot's record with zeros (unlocked; the slot is claimed).
  void clear_record(uint32_t slot);
  struct PendingObject {
    uint64_t seq = 0;
    std::shared_ptr<const std::vector<std::byte>> object;
    std::vector<FrameRef> frames;
    uint64_t base = 0;  // the segment offset of object's first byte
    // Frame `ref`'s bytes in object; empty when it does not hold them all.
    std::span<const std::byte> bytes_of(const FrameRef& ref) const;
  };
  // read() of a frame of `pending`, which put_object() queued: checks the
  // frame's crc and copies it into `out`; false (a miss) when it fails.
  bool read_pending(const PendingObject& pending, const FrameRef& ref, std::span<std::byte> out) EXCLUDES(mu_);
  // The writer thread: put()s the frames of each queued object in turn.
  void write_pending() EXCLUDES(mu_);

  const std::string dir_;
  const uint32_t slots_;
  const uint32_t protected_max_;
  const uint64_t pending_max_;  // Options::pending_bytes
  const UniqueFd frames_fd_;
  const UniqueFd records_fd_;

  mutable Mutex mu_;
  std::unordered_map<Key, Entry, KeyHash> map_ GUARDED_BY(mu_);
  std::list<Key> probation_ GUARDED_BY(mu_);  // front = most recent
  std::list<Key> protected_ GUARDED_BY(mu_);  // front = most recent
  uint32_t protected_count_ GUARDED_BY(mu_) = 0;
  std::vector<uint32_t> free_ GUARDED_BY(mu_);
  // Bumped whenever a slot changes hands: a get() that read a slot keeps
  // what it read only if the generation did not move.
  std::vector<uint64_t> generation_ GUARDED_BY(mu_);
  std::unordered_set<Key, KeyHash> inserting_ GUARDED_BY(mu_);
  DiskFrameCacheStats stats_ GUARDED_BY(mu_);
  bool write_warned_ GUARDED_BY(mu_) = false;
  // Objects for the writer thread, oldest first; the front is being written
  // while writing_. A drop_segments() of the front's seq meanwhile sets
  // writing_dropped_: the writer drops what it wrote once done.
  std::deque<PendingObject> pending_ GUARDED_BY(mu_);
  uint64_t pending_bytes_ GUARDED_BY(mu_) = 0;
  bool writing_ GUARDED_BY(mu_) = false;
  bool writing_dropped_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  CondVar pending_cv_;                  // with mu_: an object was queued, or stopping_ set
  CondVar settled_cv_;                  // with mu_: an object was written or dropped
  std::thread writer_ GUARDED_BY(mu_);  // started by the first put_object()
};

}  // namespace portalbd
