// The journal's writer (journal.h): appends records to the head of the ring
// of chunks in wseq order (one append holds the turn at a time), moves to the
// next chunk behind a pad when the head is full, makes appends durable with
// group-commit fdatasyncs, frees chunks as release() says their records are in
// object storage, and reports stats. Open recovers through journal_format.cc
// (the files' format; journal_recovery.cc reads the ring back) and builds the
// writer's state from what it found.
#include "src/engine/journal.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "src/engine/journal_format.h"
#include "src/log/log.h"
#include "src/util/crc32c.h"
#include "src/util/thread_name.h"

namespace portalbd {

namespace {

using Clock = std::chrono::steady_clock;
using journal_format::chunk_name;
using journal_format::encode_header;
using journal_format::Header;
using journal_format::kKindPad;
using journal_format::kKindWrite;
using journal_format::record_bytes;

}  // namespace

Journal::Journal(JournalOptions opts, UniqueFd dir_fd, std::vector<UniqueFd> chunk_fds, UniqueFd start_fd,
                 uint64_t journal_id, bool claim_pending, std::vector<bool> unwritten)
    : opts_(std::move(opts)),
      dir_fd_(std::move(dir_fd)),
      chunk_fds_(std::move(chunk_fds)),
      start_fd_(std::move(start_fd)),
      journal_id_(journal_id),
      max_payload_bytes_((opts_.chunk_bytes - kAlign - kHeaderBytes) / kBlockBytes * kBlockBytes),
      claim_pending_(claim_pending),
      chunks_(chunk_fds_.size()),
      dirty_(chunk_fds_.size(), false),
      unwritten_(std::move(unwritten)) {
  unwritten_.resize(chunk_fds_.size(), false);
}

Journal::~Journal() {
  {
    MutexLock lock(&mu_);
    stop_zeroer_ = true;
    zero_cv_.notify_all();
  }
  if (zeroer_.joinable()) zeroer_.join();
}

void Journal::zero_ahead() {
  MutexLock lock(&mu_);
  zero_ahead_locked(lock);
}

void Journal::zero_ahead_locked(MutexLock& lock) {
  while (!stop_zeroer_ && !closed_ && failed_.ok()) {
    const uint64_t c = chunk_index_after(head_);
    if (unwritten_[c] && !chunks_[c].in_use && chunks_[head_].write_offset >= zero_start_offset()) {
      unwritten_[c] = false;
      zeroing_ = c;
      // Only this thread touches chunk c until zeroing_ is cleared: a switch
      // into it waits (switch_chunk), and nothing else writes a chunk that
      // is not in use.
      mu_.unlock();
      const Status st =
          journal_format::zero_chunk(chunk_fds_[c].get(), opts_.dir + "/" + chunk_name(c), opts_.chunk_bytes);
      mu_.lock();
      zeroing_ = kNoChunk;
      if (st.ok()) {
        ++chunks_zeroed_;
      } else {
        log::get("journal")->warn(
            "journal could not write a new chunk ahead of use; appends there still work, with slower fdatasyncs "
            "error={}",
            log::quote(st.ToString()));
      }
      zero_cv_.notify_all();
      continue;
    }
    if (std::none_of(unwritten_.begin(), unwritten_.end(), [](bool b) { return b; })) break;
    zero_cv_.wait(lock);
  }
  zero_pending_ = false;
}

Result<OpenedJournal> Journal::Open(JournalOptions opts) {
  auto found = journal_format::open_files(opts);
  if (!found.ok()) return found.status();
  journal_format::OpenedFiles files = std::move(found).value();
  const journal_format::Meta& meta = files.meta;
  opts.chunk_bytes = meta.chunk_bytes;
  opts.capacity_bytes = meta.chunk_bytes * meta.chunk_count;

  // The caller may keep writing as the previous writer (it replays that
  // writer's records as its own): then meta stays as it is.
  if (!meta.writer_id.empty() && meta.writer_id != opts.writer_id && opts.adopt_previous_writer &&
      opts.adopt_previous_writer(meta.writer_id)) {
    opts.writer_id = meta.writer_id;
  }
  const bool claim = meta.writer_id != opts.writer_id;
  std::unique_ptr<Journal> j(new Journal(std::move(opts), std::move(files.dir_fd), std::move(files.chunk_fds),
                                         std::move(files.start_fd), meta.journal_id, claim,
                                         std::move(files.unwritten)));
  const JournalRecovery& report = files.report;
  {
    MutexLock lock(&j->mu_);
    const uint64_t newest = report.newest_wseq;
    const auto now = Clock::now();
    for (const journal_format::RecoveredChunk& c : files.run) {
      j->chunks_[c.index] = ChunkState{true, c.first_wseq, c.last_wseq, c.end_offset};
    }
    j->head_ = files.run.empty() ? 0 : files.head;
    j->chunks_[j->head_].in_use = true;
    j->appended_wseq_ = newest;
    j->synced_wseq_ = newest;
    j->released_wseq_ = report.released_wseq;
    j->next_wseq_ = std::max(newest, report.released_wseq) + 1;
    if (report.released_wseq > newest) j->note_skipped(newest + 1, report.released_wseq);
    j->disk_released_ = report.released_wseq;
    for (size_t i = 0; i < report.records.size(); ++i) {
      j->live_.push_back(LiveRecord{report.records[i].wseq, now});
      j->disk_positions_.push_back(
          RecordPosition{report.records[i].wseq, files.record_at[i].chunk, files.record_at[i].offset});
    }
    j->free_released_chunks();
  }
  {
    MutexLock lock(&j->mu_);
    j->zero_pending_ = std::any_of(j->unwritten_.begin(), j->unwritten_.end(), [](bool b) { return b; });
    if (j->zero_pending_) {
      j->zeroer_ = std::thread([p = j.get()] {
        name_this_thread("journal-zero");
        p->zero_ahead();
      });
    }
  }
  log::get("journal")->info(
      "journal opened dir={} live_records={} newest_wseq={} released_wseq={} previous_writer={} bytes_read={} "
      "read_whole_ring={}",
      log::quote(j->opts_.dir), report.records.size(), report.newest_wseq, report.released_wseq,
      log::quote(report.previous_writer_id), report.chunk_bytes_read, report.read_whole_ring);
  OpenedJournal opened;
  opened.journal = std::move(j);
  opened.recovery = std::move(files.report);
  return opened;
}

int Journal::inject(const char* op) const { return opts_.inject_error ? opts_.inject_error(op) : 0; }

Status Journal::fail(Status st) {
  if (failed_.ok()) {
    failed_ = Status::IOError("journal " + opts_.dir + " failed: " + st.message());
    log::get("journal")->error("journal failed, FLUSH fails until it is reopened dir={} error={}",
                               log::quote(opts_.dir), log::quote(st.message()));
  }
  turn_cv_.notify_all();
  space_cv_.notify_all();
  synced_cv_.notify_all();
  zero_cv_.notify_all();
  return failed_;
}

Status Journal::write_meta_claim() {
  journal_format::Meta m;
  m.volume_uuid = opts_.volume_uuid;
  m.writer_id = opts_.writer_id;
  m.journal_id = journal_id_;
  m.chunk_bytes = opts_.chunk_bytes;
  m.chunk_count = chunk_fds_.size();
  return journal_format::write_meta(opts_.dir, dir_fd_.get(), m).With("journal claims its records");
}

void Journal::free_released_chunks() {
  const uint64_t n = chunk_fds_.size();
  uint64_t c = chunk_index_after(head_);
  while (c != head_ && !chunks_[c].in_use) c = chunk_index_after(c);
  while (c != head_ && chunks_[c].in_use && chunks_[c].last_wseq <= released_wseq_) {
    chunks_[c] = ChunkState{};
    c = (c + 1) % n;
    space_cv_.notify_all();
  }
}

Status Journal::wait_for_next_chunk(MutexLock& lock, Clock::time_point deadline) {
  const uint64_t next = chunk_index_after(head_);
  while (failed_.ok() && chunks_[next].in_use) {
    if (space_cv_.wait_until(lock, deadline) == std::cv_status::timeout && failed_.ok() && chunks_[next].in_use) {
      const uint64_t oldest = live_.empty() ? 0 : live_.front().wseq;
      return Status::Busy("journal " + opts_.dir + " is full (" + std::to_string(chunk_fds_.size()) + " chunks of " +
                          std::to_string(opts_.chunk_bytes) + " bytes; oldest unreleased wseq " +
                          std::to_string(oldest) + "): waiting for uploads to release space");
    }
  }
  return failed_;
}

Status Journal::write_pad(uint64_t chunk, uint64_t offset, std::span<const std::byte> pad) const {
  const int fd = chunk_fds_[chunk].get();
  int e = inject("pwrite");
  Status st = e != 0 ? Status::IOError(std::string("pwrite: ") + std::strerror(e)) : pwrite_all(fd, pad, offset);
  if (st.ok()) {
    e = inject("fdatasync");
    if (e == 0 && ::fdatasync(fd) != 0) e = errno;
    if (e != 0) st = Status::IOError(std::string("fdatasync: ") + std::strerror(e));
  }
  return st.With(chunk_name(chunk) + " pad at offset " + std::to_string(offset));
}

std::vector<std::byte> Journal::pad_locked() const {
  Header pad;
  pad.kind = kKindPad;
  pad.journal_id = journal_id_;
  pad.wseq = chunks_[head_].last_wseq;
  pad.synced_wseq = synced_wseq_;
  pad.released_wseq = released_wseq_;
  return encode_header(pad);
}

Status Journal::switch_chunk(MutexLock& lock, Clock::time_point deadline) {
  PBD_RETURN_IF_ERROR(wait_for_next_chunk(lock, deadline));
  const ChunkState& h = chunks_[head_];
  if (h.last_wseq != 0 && h.write_offset + kAlign <= opts_.chunk_bytes) {
    // J2/J3: the pad, carrying the release watermark, is durable before any
    // record of the next chunk is overwritten.
    const std::vector<std::byte> bytes = pad_locked();
    const uint64_t chunk = head_;
    const uint64_t offset = h.write_offset;
    // The append turn keeps head_ and this chunk's state still meanwhile.
    mu_.unlock();
    Status st = write_pad(chunk, offset, bytes);
    mu_.lock();
    ++fdatasyncs_;
    if (!st.ok()) return fail(st);
    chunks_[chunk].write_offset = offset + kAlign;
  }
  const uint64_t next = chunk_index_after(head_);
  while (zeroing_ == next) zero_cv_.wait(lock);
  unwritten_[next] = false;  // taken as it is when the zeroer has not come to it
  chunks_[next] = ChunkState{true, 0, 0, 0};
  head_ = next;
  zero_cv_.notify_all();
  free_released_chunks();
  return Status::OK();
}

Status Journal::append(uint64_t wseq, uint64_t lba, uint64_t nblocks, ExtentState state,
                       std::span<const std::byte> data, Clock::time_point deadline) {
  const bool is_data = state == ExtentState::kData;
  if (wseq == 0 || nblocks == 0 || (is_data && data.size() != nblocks * kBlockBytes) || (!is_data && !data.empty()) ||
      static_cast<uint8_t>(state) > static_cast<uint8_t>(ExtentState::kHole)) {
    return Status::InvalidArgument("journal append: malformed record (wseq " + std::to_string(wseq) + ", " +
                                   std::to_string(nblocks) + " blocks, " + std::to_string(data.size()) +
                                   " payload bytes)");
  }
  if (data.size() > max_payload_bytes_) {
    return Status::InvalidArgument("journal append: " + std::to_string(data.size()) +
                                   " bytes exceed a record's maximum of " + std::to_string(max_payload_bytes_));
  }
  return append_record(kKindWrite, static_cast<uint8_t>(state), wseq, lba, nblocks, data, deadline);
}

Status Journal::append_marker(uint64_t wseq, uint64_t lba, uint64_t nblocks, Clock::time_point deadline) {
  if (wseq == 0 || nblocks == 0) {
    return Status::InvalidArgument("journal append: malformed marker (wseq " + std::to_string(wseq) + ", " +
                                   std::to_string(nblocks) + " blocks)");
  }
  return append_record(journal_format::kKindMarker, static_cast<uint8_t>(ExtentState::kData), wseq, lba, nblocks, {},
                       deadline);
}

Status Journal::append_record(uint8_t kind, uint8_t state, uint64_t wseq, uint64_t lba, uint64_t nblocks,
                              std::span<const std::byte> data, Clock::time_point deadline) {
  Header h;
  h.kind = kind;
  h.state = state;
  h.journal_id = journal_id_;
  h.wseq = wseq;
  h.lba = lba;
  h.nblocks = nblocks;
  h.payload_bytes = static_cast<uint32_t>(data.size());
  h.payload_crc = crc32c(data);
  const uint64_t bytes = record_bytes(h);

  MutexLock lock(&mu_);
  if (closed_) return Status::Cancelled("journal " + opts_.dir + " is closed");
  while (failed_.ok() && wseq > next_wseq_) {
    if (turn_cv_.wait_until(lock, deadline) == std::cv_status::timeout && failed_.ok() && wseq > next_wseq_) {
      return Status::Busy("journal append of wseq " + std::to_string(wseq) + " timed out waiting for wseq " +
                          std::to_string(next_wseq_) + " (after Open, release() the highest stored wseq first)");
    }
  }
  if (!failed_.ok()) return failed_;
  // Storage may hold a write before its append comes (the caller buffers it,
  // then appends outside its lock, and an upload can commit in between);
  // release() then moved the sequence past it, and appends of later writes
  // may have gone on meanwhile. Nothing left to journal.
  if (wseq < next_wseq_ && wseq <= released_wseq_ && was_skipped(wseq)) return Status::OK();
  if (wseq < next_wseq_ || turn_taken_) {
    return Status::InvalidArgument("journal append: wseq " + std::to_string(wseq) +
                                   (turn_taken_
                                        ? " is being appended already"
                                        : " was appended already (next is " + std::to_string(next_wseq_) + ")"));
  }
  turn_taken_ = true;  // the turn: no other append proceeds until this one ends
  const ChunkState& head = chunks_[head_];
  if ((head.last_wseq != 0 && wseq != head.last_wseq + 1) || head.write_offset + bytes > opts_.chunk_bytes - kAlign) {
    Status st = switch_chunk(lock, deadline);
    if (!st.ok()) {
      turn_taken_ = false;
      turn_cv_.notify_all();
      return st;
    }
  }
  h.synced_wseq = synced_wseq_;
  h.released_wseq = released_wseq_;
  const uint64_t chunk = head_;
  const uint64_t offset = chunks_[chunk].write_offset;
  const bool claim = claim_pending_;
  lock.unlock();

  Status st;
  if (claim) st = write_meta_claim();
  if (st.ok()) {
    const std::vector<std::byte> header = encode_header(h);
    if (int e = inject("pwrite")) {
      st = Status::IOError(std::string("pwrite: ") + std::strerror(e));
    } else {
      const struct iovec iov[] = {{const_cast<std::byte*>(header.data()), header.size()},
                                  {const_cast<std::byte*>(data.data()), data.size()}};
      st = pwritev_all(chunk_fds_[chunk].get(), iov, offset);
    }
    if (!st.ok()) st = st.With(chunk_name(chunk) + " offset " + std::to_string(offset));
  }

  lock.lock();
  turn_taken_ = false;
  turn_cv_.notify_all();
  if (!st.ok()) {
    if (claim) return st;  // the meta was not rewritten: nothing written, retry later
    return fail(st);
  }
  claim_pending_ = false;
  ChunkState& c = chunks_[chunk];
  if (c.first_wseq == 0) c.first_wseq = wseq;
  c.last_wseq = wseq;
  c.write_offset = offset + bytes;
  if (zero_pending_ && c.write_offset >= zero_start_offset()) zero_cv_.notify_one();
  dirty_[chunk] = true;
  appended_wseq_ = wseq;
  next_wseq_ = wseq + 1;
  live_.push_back(LiveRecord{wseq, Clock::now()});
  disk_positions_.push_back(RecordPosition{wseq, chunk, offset});
  if (note_disk_released(h.released_wseq)) {
    uint64_t start_chunk = 0, start_offset = 0, prev_wseq = 0;
    start_locked(&start_chunk, &start_offset, &prev_wseq);
    const uint64_t released = disk_released_;
    lock.unlock();
    write_start(start_chunk, start_offset, prev_wseq, released);
  }
  return Status::OK();
}

Status Journal::sync(uint64_t wseq) {
  MutexLock lock(&mu_);
  if (closed_) return Status::Cancelled("journal " + opts_.dir + " is closed");
  ++syncs_;
  if (wseq <= released_wseq_) return failed_;  // in object storage already
  if (wseq > appended_wseq_) {
    return Status::InvalidArgument("journal sync: wseq " + std::to_string(wseq) + " is not appended (newest " +
                                   std::to_string(appended_wseq_) + ")");
  }
  for (;;) {
    if (!failed_.ok()) return failed_;
    if (synced_wseq_ >= wseq) return Status::OK();
    if (sync_running_) {
      synced_cv_.wait(lock);
      continue;
    }
    // Leader: everything appended so far, in every chunk written since the
    // last round took it.
    sync_running_ = true;
    const uint64_t target = appended_wseq_;
    std::vector<std::pair<int, uint64_t>> todo;
    for (uint64_t c = 0; c < dirty_.size(); ++c) {
      if (!dirty_[c]) continue;
      todo.emplace_back(chunk_fds_[c].get(), c);
      dirty_[c] = false;
    }
    lock.unlock();
    Status st;
    uint64_t calls = 0;
    for (const auto& [fd, c] : todo) {
      ++calls;
      int e = inject("fdatasync");
      if (e == 0 && ::fdatasync(fd) != 0) e = errno;
      if (e != 0) {
        st = Status::IOError("fdatasync " + chunk_name(c) + ": " + std::strerror(e));
        break;
      }
    }
    lock.lock();
    sync_running_ = false;
    fdatasyncs_ += calls;
    synced_cv_.notify_all();
    if (!st.ok()) return fail(st);
    synced_wseq_ = std::max(synced_wseq_, target);
  }
}

void Journal::release(uint64_t upto) {
  MutexLock lock(&mu_);
  if (upto <= released_wseq_) return;
  released_wseq_ = upto;
  while (!live_.empty() && live_.front().wseq <= upto) live_.pop_front();
  if (upto >= next_wseq_ && !turn_taken_) {
    note_skipped(next_wseq_, upto);
    next_wseq_ = upto + 1;  // the sequence moves on; the next append starts a new chunk (J1)
    turn_cv_.notify_all();
  }
  free_released_chunks();
}

void Journal::note_skipped(uint64_t first, uint64_t last) {
  skipped_.push_back(WseqRun{first, last});
  if (skipped_.size() > kMaxSkippedRuns) skipped_.pop_front();
}

bool Journal::was_skipped(uint64_t wseq) const {
  for (auto it = skipped_.rbegin(); it != skipped_.rend(); ++it) {  // late appends are mostly recent
    if (wseq >= it->first && wseq <= it->last) return true;
  }
  return false;
}

bool Journal::note_disk_released(uint64_t released) {
  if (released <= disk_released_) return false;
  disk_released_ = released;
  while (!disk_positions_.empty() && disk_positions_.front().wseq <= released) disk_positions_.pop_front();
  return true;
}

void Journal::start_locked(uint64_t* chunk, uint64_t* offset, uint64_t* prev_wseq) const {
  if (!disk_positions_.empty()) {
    *chunk = disk_positions_.front().chunk;
    *offset = disk_positions_.front().offset;
    *prev_wseq = disk_positions_.front().wseq - 1;
    return;
  }
  *chunk = head_;
  *offset = chunks_[head_].write_offset;
  *prev_wseq = appended_wseq_;
}

void Journal::write_start(uint64_t chunk, uint64_t offset, uint64_t prev_wseq, uint64_t released_wseq) {
  MutexLock lock(&start_mu_);
  if (released_wseq <= start_written_released_) return;
  // No fsync: a start that a crash loses leaves an older one, which only
  // makes the next Open read more (see "Opening" in journal.h).
  const Status st = journal_format::write_start(start_fd_.get(), journal_id_,
                                                journal_format::LiveStart{chunk, offset, prev_wseq, released_wseq});
  if (st.ok()) {
    start_written_released_ = released_wseq;
  } else if (!start_write_failed_) {
    start_write_failed_ = true;
    log::get("journal")->warn(
        "journal could not write its start file; the next open may read the whole ring dir={} "
        "error={}",
        log::quote(opts_.dir), log::quote(st.ToString()));
  }
}

Status Journal::close() {
  MutexLock lock(&mu_);
  if (closed_) return Status::OK();
  while (turn_taken_) turn_cv_.wait(lock);
  closed_ = true;
  turn_cv_.notify_all();
  zero_cv_.notify_all();
  if (!failed_.ok()) return failed_;
  const ChunkState& h = chunks_[head_];
  if (h.last_wseq == 0 || h.write_offset + kAlign > opts_.chunk_bytes) return Status::OK();  // no chain to end
  const std::vector<std::byte> bytes = pad_locked();
  // Not synced: should it be lost, Open returns more released records, which
  // the caller filters anyway. The next append overwrites it (it continues
  // the chain from this offset).
  const int fd = chunk_fds_[head_].get();
  Status st = pwrite_all(fd, bytes, h.write_offset);
  if (!st.ok()) return st.With("journal close: " + chunk_name(head_));
  if (note_disk_released(released_wseq_)) {
    uint64_t start_chunk = 0, start_offset = 0, prev_wseq = 0;
    start_locked(&start_chunk, &start_offset, &prev_wseq);
    const uint64_t released = disk_released_;
    lock.unlock();
    write_start(start_chunk, start_offset, prev_wseq, released);
  }
  return Status::OK();
}

uint64_t Journal::appended_wseq() const {
  MutexLock lock(&mu_);
  return appended_wseq_;
}

uint64_t Journal::released_wseq() const {
  MutexLock lock(&mu_);
  return released_wseq_;
}

std::optional<Clock::time_point> Journal::oldest_live_appended() const {
  MutexLock lock(&mu_);
  if (live_.empty()) return std::nullopt;
  return live_.front().appended;
}

JournalStats Journal::stats() const {
  MutexLock lock(&mu_);
  JournalStats s;
  s.chunk_bytes = opts_.chunk_bytes;
  s.capacity_bytes = opts_.chunk_bytes * chunk_fds_.size();
  for (uint64_t c = 0; c < chunks_.size(); ++c) {
    if (!chunks_[c].in_use) continue;
    s.used_bytes += c == head_ ? chunks_[c].write_offset : opts_.chunk_bytes;
  }
  s.live_records = live_.size();
  if (!live_.empty()) {
    s.oldest_live_wseq = live_.front().wseq;
    s.oldest_live_appended = live_.front().appended;
  }
  s.appended_wseq = appended_wseq_;
  s.synced_wseq = synced_wseq_;
  s.released_wseq = released_wseq_;
  s.syncs = syncs_;
  s.fdatasyncs = fdatasyncs_;
  s.chunks_zeroed = chunks_zeroed_;
  s.failed = !failed_.ok();
  return s;
}

}  // namespace portalbd
