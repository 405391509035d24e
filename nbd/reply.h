// ReplyWriter: serialises replies of one connection onto its transport.
//
// Workers finish requests in any order; each reply (a simple reply, or every
// chunk of one structured reply) is written under one mutex so bytes of two
// replies never interleave. Once a write fails the writer is "broken": later
// calls fail fast and the connection winds down.
//
// Ownership: borrows the transport (the Connection owns it and outlives us).
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nbd/transport.h"
#include "src/util/mutex.h"

namespace portalbd::nbd {

// One structured reply chunk: its header fields plus a small encoded payload
// prefix and an optional borrowed data tail (OFFSET_DATA bytes).
struct Chunk {
  uint16_t type = 0;
  std::vector<std::byte> fields;    // encoded fixed fields (offset, error, ...)
  std::span<const std::byte> data;  // bulk data after the fields; borrowed
};

class ReplyWriter {
 public:
  explicit ReplyWriter(Transport& out) : out_(out) {}

  // Simple reply; `data` follows only when error == 0 (READ without
  // structured replies).
  bool simple(uint64_t cookie, uint32_t error, std::span<const std::byte> data = {});
  // One structured reply: all chunks, the last one flagged DONE.
  // REQUIRES: !chunks.empty().
  bool structured(uint64_t cookie, const std::vector<Chunk>& chunks);

  // simple() and structured(), held back until flush_held(): the reader
  // thread answers a burst of requests it ran itself (buffered writes, reads
  // served from memory) with one send instead of one each. The bytes are
  // copied, so `data` need not outlive the call. Only one thread (the
  // reader) may use these. Return false once the writer is broken.
  bool simple_held(uint64_t cookie, uint32_t error = 0, std::span<const std::byte> data = {});
  bool structured_held(uint64_t cookie, const std::vector<Chunk>& chunks);
  // Sends every held reply. True when there was none or all were sent.
  bool flush_held();
  size_t held() const { return held_count_; }         // replies
  size_t held_bytes() const { return held_.size(); }  // their encoded size
  // Whether a held reply answers a READ with data (or a hole): one another
  // reader may be waiting for, unlike the replies to writes.
  bool holds_read_data() const { return held_read_data_; }

  bool broken() const { return broken_.load(std::memory_order_relaxed); }

  // Chunk builders.
  static Chunk error_chunk(uint32_t error, const std::string& message);
  static Chunk error_offset_chunk(uint32_t error, const std::string& message, uint64_t offset);
  static Chunk data_chunk(uint64_t offset, std::span<const std::byte> data);
  static Chunk hole_chunk(uint64_t offset, uint32_t length);

 private:
  bool send(std::span<const struct iovec> iov) EXCLUDES(mu_);

  Transport& out_;
  Mutex mu_;  // held across each write to out_: one reply at a time
  std::atomic<bool> broken_{false};
  // Encoded replies not sent yet, and how many; the holding thread's.
  std::vector<std::byte> held_;
  size_t held_count_ = 0;
  bool held_read_data_ = false;
};

}  // namespace portalbd::nbd
