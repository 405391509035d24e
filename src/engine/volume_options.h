// VolumeOptions: how a Volume is opened and run. Shared by the volume and
// its parts (FlushPipeline, GarbageCollector, Checkpointer).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "src/engine/writer_lease.h"
#include "src/format/codec.h"

namespace portalbd {

struct VolumeOptions {
  uint64_t size_bytes = 0;  // 0: the existing volume's size, or kDefaultSize for a new one
  // Chains of at least this many frozen layers (snapshots) get a flattened
  // base, so reads stop walking them (layer_set.h); 0: never.
  uint32_t flatten_min_depth = 16;
  // The extents of the index kept in memory (layer_set.h: the index stays on
  // disk, reads load the chunks they need): at most about this many bytes of
  // them. 0: no limit (still loaded on demand, never dropped).
  uint64_t index_cache_bytes = 64ull << 20;
  bool grow = false;  // allow size_bytes larger than the existing volume
  uint64_t segment_bytes = 64ull << 20;
  uint64_t write_buffer_bytes = 256ull << 20;
  uint64_t flush_interval_ms = 1000;  // 0 disables the timer
  // Storage outages. While uploads fail with a retryable error (kIOError,
  // kUnavailable, kBusy), flush() keeps retrying and writers that find the
  // write buffer full keep waiting, until storage has accepted no upload for
  // this long; then they answer the error (EIO to NBD clients). Buffered data
  // is never dropped: it uploads once storage is back. 0: flush() fails at
  // the first failed upload and writers wait for buffer space indefinitely.
  uint64_t flush_timeout_ms = 0;
  // Sealed buffers encoded and PUT at once (the upload window, rule U1
  // above); clamped to [1, kMaxUploadWindow]. 1: one at a time.
  uint32_t upload_concurrency = 1;
  uint64_t cache_bytes = 256ull << 20;
  // The local disk cache of stored frames (disk_frame_cache.h): frames
  // fetched from storage are kept in this directory, up to this many bytes,
  // across restarts. 0 or "": none. Worth it only for a remote store; a
  // cache that cannot be opened is logged and the volume opens without.
  uint64_t disk_cache_bytes = 0;
  std::string disk_cache_dir;
  // Frames fetched at once, from storage or the disk cache (frame_fetcher.h):
  // a remote store gives one stream tens of MiB/s, many of them much more.
  uint32_t fetch_concurrency = 32;
  // Read-ahead for sequential readers (stream_detector.h): the most one
  // stream reads ahead of itself, in bytes of the device. 0: none.
  uint64_t read_ahead_bytes = 64ull << 20;
  Codec codec = Codec::kLz4;
  // The SQLite file, or kInMemoryIndex for a store that starts empty and
  // keeps nothing (memory://): the index then costs no file I/O at all, and
  // cannot be restored from a checkpoint.
  std::string index_path;
  // The store dies with this process (memory://), so the volume's data can
  // live nowhere more durable than this process's memory. Writes then go
  // straight into the live layer's map as the buffers they arrived in: no
  // write buffer, no segments, no uploads, no index rows for them. An
  // overwrite or trim frees the bytes it replaces (once no snapshot or
  // reader holds them), so memory follows the live data, as in a RAM disk;
  // gc() compacts buffers that are mostly overwritten. flush() and FUA
  // return at once. Snapshots, restores and snapshot exports work as on any
  // volume (layers share the buffers). There is nothing to checkpoint.
  bool ephemeral = false;
  // The claim on the volume (DESIGN invariant 6). Checked before every
  // segment upload, renewed by the flusher, released by close(). Optional.
  std::shared_ptr<WriterLease> lease;
  // Damaged storage (docs/design.md, "What open() checks"): open() refuses
  // a volume whose storage lost or broke committed data, naming what is
  // wrong. With repair it accepts the loss instead: it moves what it cannot
  // read to quarantine/, logs every sequence number, layer and byte range
  // lost, and opens.
  bool repair = false;
  // A reader of storage another daemon writes (snapshot_reader.h): open
  // never PUTs or DELETEs (no manifest is created, nothing is quarantined:
  // an object open() would set aside is skipped or refused instead), the
  // index is rebuilt from storage whatever it held (a private cache), and
  // writes, snapshot changes, GC and checkpoints are refused with
  // kReadOnly. Takes no lease; repair and the journal must be off.
  bool read_only = false;
  // The local write-ahead journal (journal.h; docs/design.md, "The local
  // journal"). With a directory, every write is also appended there, and
  // FLUSH and FUA return after one fdatasync of it (group commit); segments
  // upload behind, as on a timer. Open replays the records storage does not
  // hold yet, so a crash or power loss of this host (its disk surviving)
  // loses no answered FLUSH. Losing the disk loses the writes answered
  // since the last upload: at most journal_bytes of them, none older than
  // journal_max_lag_ms (writers wait beyond either); storage alone still
  // opens to a prefix of the writes. "" (and on an ephemeral volume): none.
  std::string journal_dir;
  // With journal_dir: the journal is turned off, but an earlier run left one
  // there. Open replays it like any journal, uploads everything, removes it,
  // and goes on without: turning the journal off never drops what it held.
  bool journal_drain = false;
  uint64_t journal_bytes = 1ull << 30;
  uint64_t journal_chunk_bytes = 64ull << 20;
  uint64_t journal_max_lag_ms = 10000;
  // With the journal: a write of at least this many bytes of data goes to
  // storage only (the journal gets a marker standing for it), and a FLUSH
  // after it waits for its upload, as without the journal. So a large
  // sequential write is written once, not twice. 0: every write is journaled.
  uint64_t journal_direct_write_bytes = 1ull << 20;
};

inline constexpr uint64_t kDefaultVolumeSize = 1ull << 30;
inline constexpr const char* kInMemoryIndex = ":memory:";
// The widest upload window: a crash leaves at most this many segments past
// the last committed one, any of them torn or missing (replay_storage()).
inline constexpr uint32_t kMaxUploadWindow = 16;

}  // namespace portalbd
