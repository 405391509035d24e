// The local journal in the volume (issue 20; docs/design.md, "The local
// journal"): which journal open() trusts, replaying it, and the write and
// FLUSH paths through it.
//
// Whose journal. Segments name their writer (SegmentFooter::writer), the
// journal's meta names its own. A journal is replayed only over storage
// whose newest segment its writer stored (or one older than writer ids):
// if another daemon stored anything since, it took the volume over and
// acknowledged its own writes on top of what it could see, so replaying
// this journal would put older writes over newer ones. Such a journal is
// set aside (discarded, with a warning naming what it held). A journal that
// is replayed is adopted: this daemon stores its segments under the same
// writer id, so a crash now and a restart later trust the journal again.
//
// What is replayed: records newer than the newest write sequence number in
// storage (SegmentFooter::max_wseq), in order, into the live layer's active
// buffer, with their own write sequence numbers. Older records are in
// storage already (a segment committed but the journal not yet told).
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <thread>

#include "src/engine/journal.h"
#include "src/engine/volume.h"
#include "src/log/log.h"

namespace portalbd {
namespace {

std::string writer_hex(uint64_t writer) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, writer);
  return buf;
}

uint64_t parse_writer_hex(const std::string& s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  return ec == std::errc() && end == s.data() + s.size() ? v : 0;
}

}  // namespace

Result<uint64_t> Volume::newest_segment_writer() {
  if (stored_segments_.empty()) return uint64_t{0};
  const auto& [seq, size] = *stored_segments_.rbegin();
  auto footer = read_segment_footer(ObjectInfo{segment_key(seq), size});
  if (!footer.ok()) return footer.status().With("read the newest segment's writer");
  return footer->writer;
}

Status Volume::open_journal() {
  if (opts_.journal_dir.empty() || opts_.ephemeral) return Status::OK();
  auto logger = log::get("engine");
  JournalOptions jo;
  jo.dir = opts_.journal_dir;
  jo.capacity_bytes = opts_.journal_bytes;
  jo.chunk_bytes = opts_.journal_chunk_bytes;
  jo.volume_uuid = uuid_;
  jo.writer_id = writer_hex(pipeline_.writer());
  // Whose journal it is decides against storage's newest segment (see the
  // top of this file): adopted in the same open, or set aside.
  auto newest = newest_segment_writer();
  if (!newest.ok()) return newest.status();
  uint64_t adopted = 0;
  jo.adopt_previous_writer = [&](const std::string& previous) {
    const uint64_t writer = parse_writer_hex(previous);
    if (writer == 0 || (*newest != 0 && *newest != writer)) return false;
    adopted = writer;
    return true;
  };
  auto opened = Journal::Open(jo);
  if (!opened.ok()) return opened.status().With("open the journal in " + jo.dir);
  const std::string previous = opened->recovery.previous_writer_id;
  if (adopted != 0) {
    pipeline_.set_writer(adopted);
  } else if (!previous.empty() && previous != jo.writer_id) {
    logger->warn(
        "setting aside a journal of another writer: storage holds segments stored by another daemon since "
        "dir={} journal_writer={} storage_writer={} records={} newest_wseq={}",
        jo.dir, previous, writer_hex(*newest), opened->recovery.records.size(), opened->recovery.newest_wseq);
    opened->journal.reset();
    PBD_RETURN_IF_ERROR(Journal::Discard(jo.dir).With("discard the journal in " + jo.dir));
    jo.adopt_previous_writer = nullptr;
    opened = Journal::Open(jo);
    if (!opened.ok()) return opened.status().With("open the journal in " + jo.dir);
  }
  if (!opened->recovery.torn_tail.empty()) {
    logger->warn("journal: cut a torn record at its end (a crash mid-append; it was never acknowledged) where={}",
                 log::quote(opened->recovery.torn_tail));
  }
  journal_ = std::move(opened->journal);
  journal_replay_ = std::move(opened->recovery.records);
  journal_newest_wseq_ = opened->recovery.newest_wseq;
  if (opts_.journal_drain) {
    logger->info(
        "journal off, but an earlier run left one: replaying it, then uploading it and removing it dir={} "
        "records_to_replay={}",
        jo.dir, journal_replay_.size());
    return Status::OK();
  }
  logger->info(
      "journal on: FLUSH is durable on this host's disk and uploads run behind; losing that disk loses at most "
      "the writes of the last max_lag_ms (and at most bytes) dir={} bytes={} max_lag_ms={} records_to_replay={}",
      jo.dir, opts_.journal_bytes, opts_.journal_max_lag_ms, journal_replay_.size());
  return Status::OK();
}

Status Volume::replay_journal() {
  if (!journal_) return Status::OK();
  uint64_t applied = 0, skipped = 0, bytes = 0, stored_wseq = 0;
  {
    MutexLock lock(&layers_.mu());
    stored_wseq = pipeline_.last_wseq_locked();  // the newest write storage holds
    for (auto& r : journal_replay_) {
      if (r.wseq <= stored_wseq) {
        ++skipped;
        continue;
      }
      // A volume never shrinks, so a record past its end was not written
      // by this volume's writers: refuse it rather than apply it.
      if (r.lba > size_bytes_ / kBlockSize || r.nblocks > size_bytes_ / kBlockSize - r.lba) {
        return Status::Corruption(
            "journal " + opts_.journal_dir + ": record wseq " + std::to_string(r.wseq) + " writes blocks " +
            std::to_string(r.lba) + "+" + std::to_string(r.nblocks) + ", past the volume's end (" +
            std::to_string(size_bytes_) +
            " bytes; a volume never shrinks, so the journal or volume.json was changed. Moving the "
            "journal dir away starts from storage alone and loses what only the journal holds)");
      }
      BlockSource src;
      src.state = r.state;
      uint64_t charged = 0;
      if (r.state == ExtentState::kData) {
        charged = r.data.size();
        src.bytes = make_block_buffer(std::move(r.data));
      }
      pipeline_.replay_locked(r.lba, r.nblocks, std::move(src), charged, r.wseq);
      ++applied;
      bytes += charged;
    }
    // Writes number on after both what storage and what the journal hold.
    const uint64_t next = std::max(stored_wseq, journal_newest_wseq_);
    pipeline_.skip_wseqs_locked(next);
  }
  journal_replay_.clear();
  journal_replay_.shrink_to_fit();
  // Before the first append (journal.h, "Sequencing"): what storage holds.
  journal_->release(stored_wseq);
  if (applied + skipped > 0) {
    log::get("engine")->info(
        "journal replayed: writes not yet in storage are back in the write buffer applied={} bytes={} "
        "already_in_storage={} storage_wseq={}",
        applied, bytes, skipped, stored_wseq);
  }
  pipeline_.set_on_commit([journal = journal_.get()](uint64_t committed_wseq) { journal->release(committed_wseq); });
  return Status::OK();
}

Status Volume::drain_journal() {
  const JournalStats before = journal_->stats();
  PBD_RETURN_IF_ERROR(pipeline_.make_durable().With("upload what the journal held before turning it off"));
  {
    // Commits (and so on_commit calls) run under the upload lock: none runs
    // while the callback and the journal go away.
    FlushPipeline::UploadLock uploads(pipeline_);
    pipeline_.set_on_commit(nullptr);
    PBD_RETURN_IF_ERROR(journal_->close().With("close the journal"));
    journal_.reset();
  }
  PBD_RETURN_IF_ERROR(Journal::Discard(opts_.journal_dir).With("remove the journal in " + opts_.journal_dir));
  log::get("engine")->info(
      "journal off: the journal an earlier run left is uploaded and removed; FLUSH now waits for storage dir={} "
      "records_uploaded={}",
      opts_.journal_dir, before.live_records);
  return Status::OK();
}

Status Volume::journal_append(uint64_t wseq, uint64_t lba, uint64_t nblocks, const BlockSource& src, bool direct) {
  std::span<const std::byte> data;
  if (src.state == ExtentState::kData && !direct) data = {src.bytes->data() + src.byte_offset, nblocks * kBlockSize};
  // A full journal waits for uploads to free it (back-pressure), asking the
  // flusher to upload now. It never gives up on a wseq it was given: a later
  // write's append waits for this one's turn. Writers are held back before
  // they take one instead (wait_for_journal_lag, the write buffer's limit).
  for (;;) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    Status st = direct ? journal_->append_marker(wseq, lba, nblocks, deadline)
                       : journal_->append(wseq, lba, nblocks, src.state, data, deadline);
    if (st.ok()) return st;
    if (!st.is(Status::Code::kBusy)) {
      log::get("engine")->error("journal append failed; the write is answered with an error error={}",
                                log::quote(st.ToString()));
      return st.With("journal");
    }
    if (pipeline_.closed()) return Status::Cancelled("volume closed while a write waited for journal space");
    pipeline_.nudge();
  }
}

Status Volume::wait_for_journal_lag() {
  // Writers wait while the oldest write not yet in storage is older than
  // max_lag_ms: what losing this disk can cost stays bounded in time.
  if (opts_.journal_max_lag_ms == 0) return Status::OK();
  const auto limit = std::chrono::milliseconds(opts_.journal_max_lag_ms);
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<uint64_t>(opts_.flush_timeout_ms, 60000));
  for (;;) {
    const auto oldest = journal_->oldest_live_appended();
    const auto now = std::chrono::steady_clock::now();
    if (!oldest || now - *oldest < limit) return Status::OK();
    if (now >= give_up) {
      return Status::Unavailable("uploads have lagged the journal by more than journal.max_lag_ms for too long");
    }
    pipeline_.nudge();  // seal and upload now rather than at the next timer tick
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Status Volume::upload_everything_locked() {
  uint64_t through;
  {
    MutexLock lock(&layers_.mu());
    pipeline_.seal_active_locked();
    through = pipeline_.next_seq_locked() - 1;
  }
  return pipeline_.upload_through(through);
}

uint64_t Volume::journal_ticket() {
  MutexLock lock(&layers_.mu());
  return pipeline_.last_wseq_locked();
}

bool Volume::direct_write_pending() const { return journal_direct_wseq_.load() > journal_->released_wseq(); }

bool Volume::flush_is_local() const { return journal_ != nullptr && !direct_write_pending(); }

Status Volume::journal_sync(FlushTicket ticket) {
  // Every write answered before the FLUSH has appended (a write is answered
  // only after), and appends go in wseq order: so the newest appended covers
  // them, whatever writes are still on their way in.
  const uint64_t appended = journal_->appended_wseq();
  const uint64_t upto = std::min<uint64_t>(ticket == kFlushEverything ? journal_ticket() : ticket, appended);
  pipeline_.count_flush();
  // A daemon that lost the volume acknowledges nothing more: the next holder
  // never sees this journal (docs/design.md, "Whose journal").
  if (opts_.lease && opts_.lease->fenced()) {
    return Status::Fenced("another portalbd took over this volume; FLUSH is refused");
  }
  if (upto == 0) return Status::OK();
  // A write that went to storage only is durable once its segment commits,
  // which also releases the journal up to it: upload first (everything
  // buffered, as a FLUSH without the journal does).
  if (direct_write_pending()) PBD_RETURN_IF_ERROR(pipeline_.make_durable());
  Status st = journal_->sync(upto);
  if (!st.ok()) {
    log::get("engine")->error("journal sync failed, FLUSH answered with EIO error={}", log::quote(st.ToString()));
    return st.With("journal");
  }
  return Status::OK();
}

}  // namespace portalbd
