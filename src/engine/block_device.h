// BlockDevice: the volume API that the NBD layer (nbd/) and the control server
// call. The NBD layer knows nothing else about the engine: no SQLite, no object
// stores. Implementations: Volume (the live, writable volume), SnapshotDevice
// (src/engine/snapshot_device.h: one snapshot, read-only) and, for the NBD
// layer's own tests, nbd/testing/memory_device.h.
//
// Contract (checked by the NBD layer before calling, asserted by implementers):
//   REQUIRES: offset + length <= size_bytes() for every call.
//   REQUIRES: length > 0 for read/write/trim/write_zeroes.
// Every call returns OK or a Status whose code maps to an NBD errno
// (nbd/errors.h). A read never returns bytes that were not written, zeroed or
// trimmed at that offset: checksum failures are kCorruption, never garbage.
//
// Thread-safety: all methods are safe to call concurrently from many
// connections. Concurrent overlapping writes land in some order, as on a disk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/format/extent_state.h"
#include "src/util/status.h"

namespace portalbd {

struct StatusExtent {
  uint64_t length = 0;
  ExtentState state = ExtentState::kHole;
};

// Builds an extent list for a range walked in order, merging neighbours in
// the same state (as block_status answers). With out == nullptr it only
// tracks the cursor.
class ExtentRun {
 public:
  ExtentRun(std::vector<StatusExtent>* out, uint64_t start) : out_(out), cursor_(start) {
    if (out_ != nullptr) out_->clear();
  }
  // [cursor, upto) is in `state`; nothing when upto <= cursor.
  void emit(uint64_t upto, ExtentState state) {
    if (upto <= cursor_) return;
    if (out_ != nullptr) {
      if (!out_->empty() && out_->back().state == state) {
        out_->back().length += upto - cursor_;
      } else {
        out_->push_back({upto - cursor_, state});
      }
    }
    cursor_ = upto;
  }
  uint64_t cursor() const { return cursor_; }
  size_t size() const { return out_ == nullptr ? 0 : out_->size(); }

 private:
  std::vector<StatusExtent>* out_;
  uint64_t cursor_;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t size_bytes() const = 0;
  virtual bool read_only() const = 0;
  // The engine's natural I/O unit (NBD_INFO_BLOCK_SIZE preferred size).
  virtual uint32_t preferred_block_size() const = 0;

  // Fills `out` with the bytes at [offset, offset + out.size()).
  virtual Status read(uint64_t offset, std::span<std::byte> out) = 0;
  // read() that also says what it read: *extents is set to the extents
  // block_status() would describe, covering the whole range, from the same
  // lookup (NBD structured reads send zero ranges as holes). The default
  // makes two lookups.
  virtual Status read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents);
  // Stores `data` at `offset`. With `fua`, returns only once durable.
  virtual Status write(uint64_t offset, std::span<const std::byte> data, bool fua) = 0;
  // write(), handing over the bytes: a device that keeps them (a write
  // buffer) can take them without a copy. `data` is left unspecified.
  virtual Status write_owned(uint64_t offset, std::vector<std::byte>&& data, bool fua) {
    return write(offset, data, fua);
  }
  // Discards [offset, offset+length); it then reads as zeros and stores nothing.
  virtual Status trim(uint64_t offset, uint64_t length, bool fua) = 0;
  // Makes [offset, offset+length) read as zeros without storing data.
  virtual Status write_zeroes(uint64_t offset, uint64_t length, bool fua) = 0;
  // Makes every write answered before this call durable in object storage.
  virtual Status flush() = 0;
  // FLUSH in two steps, for a server that queues requests: flush_ticket()
  // when the FLUSH is received names the writes answered by then, and
  // flush_through(ticket), later and on any thread, makes at least those
  // durable. A device that can tell writes apart then skips work a later
  // flush already did; the default flushes everything.
  using FlushTicket = uint64_t;
  static constexpr FlushTicket kFlushEverything = UINT64_MAX;
  virtual FlushTicket flush_ticket() { return kFlushEverything; }
  virtual Status flush_through(FlushTicket ticket) {
    (void)ticket;
    return flush();
  }
  // True when flush() and FUA have nothing to wait for (a store that dies
  // with the process): a server may then run them where it runs plain
  // writes, without a hand-off to another thread.
  virtual bool flush_is_free() const { return false; }
  // True when flush() and FUA, as things stand, cost one local fdatasync and
  // wait for no upload (a volume with a local journal): a server may run them
  // on its reader thread, as a short wait beats a hand-off to another thread.
  // A hint: it may turn false just after, and such a flush then takes longer,
  // never less care.
  virtual bool flush_is_local() const { return false; }
  // True when a read never waits for storage, because everything the device
  // holds is in this process's memory: a server may then run small reads
  // where it runs plain writes, without a hand-off to another thread.
  virtual bool reads_from_memory() const { return false; }
  // read_described(), only if it can be served without waiting for storage or
  // a disk: from memory, or from file pages the kernel holds. true: served,
  // `out` and *extents filled. false: nothing was served (a read that would
  // wait, or any error) and *extents may hold anything; the caller then calls
  // read_described() where waiting is fine. A server's reader thread runs such
  // reads itself instead of handing them to a worker thread.
  virtual bool read_if_cached(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) {
    (void)offset;
    (void)out;
    (void)extents;
    return false;
  }
  // Describes [offset, offset+length) as a run of extents, in order, covering
  // at least the first byte. May stop early (after max_extents).
  virtual Status block_status(uint64_t offset, uint64_t length, size_t max_extents, std::vector<StatusExtent>* out) = 0;
  // Hints that [offset, offset+length) will be read soon (NBD_CMD_CACHE).
  virtual Status prefetch(uint64_t offset, uint64_t length) {
    (void)offset;
    (void)length;
    return Status::OK();
  }
};

}  // namespace portalbd
