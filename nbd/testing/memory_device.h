// Test doubles for the NBD layer: an in-memory BlockDevice that tracks
// per-sector allocation state (so block status and sparse reads can be
// checked), can fail on demand and can slow down, and an ExportProvider over a
// map of such devices.
//
// Header-only: the Makefile builds nbd/*.cc only, and only tests include this.
// Thread-safety: every method locks; safe from many server threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "nbd/export_provider.h"
#include "src/engine/block_device.h"
#include "src/util/mutex.h"

namespace portalbd::nbd::testing {

class MemoryDevice : public BlockDevice {
 public:
  static constexpr uint64_t kSector = 512;

  explicit MemoryDevice(uint64_t size, bool read_only = false, uint32_t preferred = 4096)
      : size_(size),
        read_only_(read_only),
        preferred_(preferred),
        data_(size),
        state_((size + kSector - 1) / kSector, ExtentState::kHole) {}

  uint64_t size_bytes() const override { return size_; }
  bool read_only() const override { return read_only_; }
  uint32_t preferred_block_size() const override { return preferred_; }

  Status read(uint64_t offset, std::span<std::byte> out) override {
    delay(out.size());
    MutexLock lock(&mu_);
    PBD_RETURN_IF_ERROR(check(offset, out.size()));
    ++reads;
    if (take_failure()) return fail_with_;
    std::memcpy(out.data(), data_.data() + offset, out.size());
    return Status::OK();
  }
  Status write(uint64_t offset, std::span<const std::byte> in, bool fua) override {
    delay(in.size());
    MutexLock lock(&mu_);
    PBD_RETURN_IF_ERROR(check(offset, in.size()));
    if (read_only_) return Status::ReadOnly("read-only");
    if (take_failure()) return fail_with_;
    std::memcpy(data_.data() + offset, in.data(), in.size());
    mark(offset, in.size(), ExtentState::kData, false);
    ++mutations;
    fua_count += fua;
    (fua ? last_fua_write_thread_ : last_write_thread_) = std::this_thread::get_id();
    return Status::OK();
  }
  Status trim(uint64_t offset, uint64_t length, bool fua) override {
    MutexLock lock(&mu_);
    PBD_RETURN_IF_ERROR(check(offset, length));
    if (take_failure()) return fail_with_;
    std::memset(data_.data() + offset, 0, length);
    mark(offset, length, ExtentState::kHole, true);
    ++trims;
    ++mutations;
    fua_count += fua;
    return Status::OK();
  }
  Status write_zeroes(uint64_t offset, uint64_t length, bool fua) override {
    MutexLock lock(&mu_);
    PBD_RETURN_IF_ERROR(check(offset, length));
    if (take_failure()) return fail_with_;
    std::memset(data_.data() + offset, 0, length);
    mark(offset, length, ExtentState::kZero, true);
    ++zeroes;
    ++mutations;
    fua_count += fua;
    return Status::OK();
  }
  bool flush_is_free() const override { return free_flush.load(); }
  bool flush_is_local() const override { return local_flush.load(); }
  bool reads_from_memory() const override { return memory_reads.load(); }
  // With cached_reads_every = n > 0, every n-th offer is served (the bytes
  // read() gives, the extents block_status() gives; never when a failure is
  // pending, which the read that follows then reports), the others are
  // declined; 0 declines every one.
  bool read_if_cached(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) override {
    const int every = cached_reads_every.load();
    if (every <= 0 || ++cached_read_offers % every != 0) return false;
    if (extents != nullptr) {
      std::vector<StatusExtent> described;
      if (!block_status(offset, out.size(), SIZE_MAX, &described).ok()) return false;
      *extents = std::move(described);
    }
    MutexLock lock(&mu_);
    if (failures_left_ > 0 || !check(offset, out.size()).ok()) return false;
    std::memcpy(out.data(), data_.data() + offset, out.size());
    ++cached_reads_served;
    return true;
  }
  Status flush() override {
    if (on_flush) on_flush();
    MutexLock lock(&mu_);
    if (take_failure()) return fail_with_;
    ++flushes;
    last_flush_thread_ = std::this_thread::get_id();
    return Status::OK();
  }
  // The ticket: how many writes, trims and zeroes were done when it was taken.
  FlushTicket flush_ticket() override { return mutations.load(); }
  Status flush_through(FlushTicket ticket) override {
    {
      MutexLock lock(&mu_);
      flush_tickets.push_back(ticket);
    }
    return flush();
  }
  Status block_status(uint64_t offset, uint64_t length, size_t max_extents, std::vector<StatusExtent>* out) override {
    MutexLock lock(&mu_);
    PBD_RETURN_IF_ERROR(check(offset, length));
    uint64_t pos = offset, end = offset + length;
    while (pos < end && out->size() < max_extents) {
      ExtentState s = state_[pos / kSector];
      uint64_t run_end = std::min(end, (pos / kSector + 1) * kSector);
      while (run_end < end && state_[run_end / kSector] == s) run_end = std::min(end, run_end + kSector);
      out->push_back({run_end - pos, s});
      pos = run_end;
    }
    return Status::OK();
  }
  Status prefetch(uint64_t offset, uint64_t length) override {
    MutexLock lock(&mu_);
    PBD_RETURN_IF_ERROR(check(offset, length));
    ++prefetches;
    return Status::OK();
  }

  // The next `count` device calls that can fail return `status`.
  void fail_next(Status status, int count = 1) {
    MutexLock lock(&mu_);
    fail_with_ = std::move(status);
    failures_left_ = count;
  }
  // Every read/write sleeps this long first (to hold requests in flight).
  void set_delay(std::chrono::milliseconds d) { delay_ms_ = d.count(); }
  // While closed, every read/write of at least `min_bytes` blocks before
  // touching data.
  void close_gate(uint64_t min_bytes = 0) {
    MutexLock lock(&gate_mu_);
    gate_open_ = false;
    gate_min_bytes_ = min_bytes;
  }
  void open_gate() {
    {
      MutexLock lock(&gate_mu_);
      gate_open_ = true;
    }
    gate_cv_.notify_all();
  }
  // Reads/writes currently blocked at the gate.
  int waiting_at_gate() {
    MutexLock lock(&gate_mu_);
    return waiting_;
  }
  // Bytes as stored, for checking writes without going through NBD.
  std::vector<std::byte> bytes(uint64_t offset, uint64_t length) {
    MutexLock lock(&mu_);
    return {data_.begin() + offset, data_.begin() + offset + length};
  }

  std::atomic<int> reads{0}, trims{0}, zeroes{0}, flushes{0}, prefetches{0}, fua_count{0};
  std::atomic<uint64_t> mutations{0};  // writes + trims + zeroes done
  // What each flush_through() was asked to cover, in call order.
  std::vector<FlushTicket> tickets() {
    MutexLock lock(&mu_);
    return flush_tickets;
  }
  std::atomic<bool> free_flush{false};   // what flush_is_free() answers
  std::atomic<bool> local_flush{false};  // what flush_is_local() answers
  // Called at the start of every flush(), outside the device's lock; set
  // before the device serves.
  std::function<void()> on_flush;
  // The threads that ran the last plain write, FUA write and flush.
  struct Threads {
    std::thread::id write, fua_write, flush;
  };
  Threads last_threads() {
    MutexLock lock(&mu_);
    return Threads{last_write_thread_, last_fua_write_thread_, last_flush_thread_};
  }
  std::atomic<bool> memory_reads{false};   // what reads_from_memory() answers
  std::atomic<int> cached_reads_every{0};  // see read_if_cached()
  std::atomic<int> cached_read_offers{0}, cached_reads_served{0};

 private:
  Status check(uint64_t offset, uint64_t length) const {
    // The server must never break the BlockDevice contract; make it loud.
    if (offset > size_ || length > size_ - offset) return Status::OutOfRange("contract violated: past the end");
    return Status::OK();
  }
  bool take_failure() REQUIRES(mu_) {
    if (failures_left_ <= 0) return false;
    --failures_left_;
    return true;
  }
  void mark(uint64_t offset, uint64_t length, ExtentState s, bool whole_sectors_only) REQUIRES(mu_) {
    uint64_t first = offset / kSector, last = (offset + length - 1) / kSector;
    for (uint64_t i = first; i <= last; ++i) {
      bool whole = offset <= i * kSector && (i + 1) * kSector <= offset + length;
      // A partial trim/zero leaves written bytes in the sector: it is data.
      state_[i] = (whole_sectors_only && !whole) ? ExtentState::kData : s;
    }
  }
  void delay(uint64_t bytes) {
    if (int64_t ms = delay_ms_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    MutexLock lock(&gate_mu_);
    if (gate_open_ || bytes < gate_min_bytes_) return;
    ++waiting_;
    while (!gate_open_) gate_cv_.wait(lock);
    --waiting_;
  }

  const uint64_t size_;
  const bool read_only_;
  const uint32_t preferred_;
  Mutex mu_;
  std::vector<FlushTicket> flush_tickets GUARDED_BY(mu_);
  std::vector<std::byte> data_ GUARDED_BY(mu_);
  std::vector<ExtentState> state_ GUARDED_BY(mu_);
  Status fail_with_ GUARDED_BY(mu_);
  int failures_left_ GUARDED_BY(mu_) = 0;
  std::thread::id last_write_thread_ GUARDED_BY(mu_), last_fua_write_thread_ GUARDED_BY(mu_),
      last_flush_thread_ GUARDED_BY(mu_);
  std::atomic<int64_t> delay_ms_{0};
  Mutex gate_mu_;
  CondVar gate_cv_;
  bool gate_open_ GUARDED_BY(gate_mu_) = true;
  uint64_t gate_min_bytes_ GUARDED_BY(gate_mu_) = 0;
  int waiting_ GUARDED_BY(gate_mu_) = 0;
};

class MemoryExports : public ExportProvider {
 public:
  void add(const std::string& name, std::shared_ptr<BlockDevice> device, std::string description = {}) {
    MutexLock lock(&mu_);
    exports_[name] = {std::move(device), std::move(description)};
    if (default_.empty()) default_ = name;
  }
  std::vector<ExportInfo> list_exports() override {
    MutexLock lock(&mu_);
    std::vector<ExportInfo> out;
    for (auto& [name, e] : exports_) out.push_back({name, e.description});
    return out;
  }
  std::string default_export() override {
    MutexLock lock(&mu_);
    return default_;
  }
  Result<std::shared_ptr<BlockDevice>> open_export(const std::string& name) override {
    MutexLock lock(&mu_);
    auto it = exports_.find(name);
    if (it == exports_.end()) return Status::NotFound("no export " + name);
    return it->second.device;
  }
  std::string describe_export(const std::string& name) override {
    MutexLock lock(&mu_);
    auto it = exports_.find(name);
    return it == exports_.end() ? std::string() : it->second.description;
  }

 private:
  struct Entry {
    std::shared_ptr<BlockDevice> device;
    std::string description;
  };
  Mutex mu_;
  std::map<std::string, Entry> exports_ GUARDED_BY(mu_);
  std::string default_ GUARDED_BY(mu_);
};

}  // namespace portalbd::nbd::testing
