#include "src/engine/disk_frame_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "src/log/log.h"
#include "src/util/crc32c.h"
#include "src/util/endian.h"
#include "src/util/thread_name.h"

namespace portalbd {
namespace {

constexpr uint32_t kRecordBytes = 32;
constexpr uint64_t kHeaderBytes = 4096;
constexpr uint32_t kRecordMagic = 0x43444250;  // "PBDC"
constexpr char kHeaderMagic[8] = {'P', 'B', 'D', 'D', 'C', 'A', 'C', '1'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kNoSlot = ~0u;

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Header: magic[8] u32 version u32 slot_bytes u32 identity_len identity
// (at most what fits) ... u32 crc32c of the bytes before it, at kHeaderBytes - 4.
std::vector<std::byte> encode_header(const std::string& identity) {
  std::vector<std::byte> h;
  for (char c : kHeaderMagic) h.push_back(static_cast<std::byte>(c));
  put_u32(&h, kFormatVersion);
  put_u32(&h, static_cast<uint32_t>(DiskFrameCache::kSlotBytes));
  const size_t len = std::min<size_t>(identity.size(), kHeaderBytes - 64);
  put_u32(&h, static_cast<uint32_t>(len));
  for (size_t i = 0; i < len; ++i) h.push_back(static_cast<std::byte>(identity[i]));
  h.resize(kHeaderBytes - 4);
  put_u32(&h, crc32c(h));
  return h;
}

std::vector<std::byte> encode_record(uint64_t seq, uint64_t offset, uint32_t stored_len, uint32_t crc) {
  std::vector<std::byte> r;
  put_u64(&r, seq);
  put_u64(&r, offset);
  put_u32(&r, stored_len);
  put_u32(&r, crc);
  put_u32(&r, kRecordMagic);
  put_u32(&r, crc32c(r));
  return r;
}

}  // namespace

Result<std::unique_ptr<DiskFrameCache>> DiskFrameCache::Open(const Options& options) {
  const uint64_t slots = options.capacity_bytes / kSlotBytes;
  if (slots == 0) return Status::InvalidArgument("disk cache smaller than one 64 KiB frame");
  if (slots > UINT32_MAX - 1) return Status::InvalidArgument("disk cache too large");
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return Status::IOError("create " + options.dir + ": " + ec.message());
  UniqueFd records(::open((options.dir + "/slots").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!records) return Status::IOError(errno_text("open " + options.dir + "/slots"));
  // One daemon per cache directory: a second would overwrite the first's slots.
  if (::flock(records.get(), LOCK_EX | LOCK_NB) != 0) {
    return Status::IOError(errno_text("lock " + options.dir + "/slots (another portalbd uses this cache)"));
  }
  UniqueFd frames(::open((options.dir + "/frames").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!frames) return Status::IOError(errno_text("open " + options.dir + "/frames"));

  auto logger = log::get("engine");
  const std::vector<std::byte> want = encode_header(options.identity);
  std::vector<std::byte> have(kHeaderBytes);
  struct stat st {};
  if (::fstat(records.get(), &st) != 0) return Status::IOError(errno_text("stat " + options.dir + "/slots"));
  const bool same =
      static_cast<uint64_t>(st.st_size) >= kHeaderBytes && pread_all(records.get(), have, 0).ok() && have == want;
  if (!same) {
    if (st.st_size != 0) logger->info("disk cache belongs to another volume or format, emptied dir={}", options.dir);
    if (::ftruncate(records.get(), 0) != 0 || ::ftruncate(frames.get(), 0) != 0) {
      return Status::IOError(errno_text("truncate " + options.dir));
    }
    PBD_RETURN_IF_ERROR(pwrite_all(records.get(), want, 0));
  }
  // The size asked for now: slots past it are given back (a smaller cache
  // than last run), the files are sparse up to it.
  if (::ftruncate(records.get(), static_cast<off_t>(kHeaderBytes + slots * kRecordBytes)) != 0 ||
      ::ftruncate(frames.get(), static_cast<off_t>(slots * kSlotBytes)) != 0) {
    return Status::IOError(errno_text("size " + options.dir));
  }
  std::unique_ptr<DiskFrameCache> cache(new DiskFrameCache(
      options.dir, static_cast<uint32_t>(slots), options.pending_bytes, std::move(frames), std::move(records)));
  PBD_RETURN_IF_ERROR(cache->reload());
  const DiskFrameCacheStats s = cache->stats();
  logger->info("disk cache open dir={} capacity_bytes={} frames={} bytes={}", options.dir, s.capacity_bytes, s.frames,
               s.bytes);
  return cache;
}

DiskFrameCache::DiskFrameCache(std::string dir, uint32_t slots, uint64_t pending_max, UniqueFd frames, UniqueFd records)
    : dir_(std::move(dir)),
      slots_(slots),
      protected_max_(static_cast<uint32_t>(uint64_t{slots} * 4 / 5)),
      pending_max_(pending_max),
      frames_fd_(std::move(frames)),
      records_fd_(std::move(records)) {
  MutexLock lock(&mu_);
  generation_.assign(slots_, 0);
  stats_.capacity_bytes = uint64_t{slots_} * kSlotBytes;
}

DiskFrameCache::~DiskFrameCache() {
  std::thread writer;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    writer = std::move(writer_);
  }
  pending_cv_.notify_all();
  if (writer.joinable()) writer.join();  // it empties pending_ first
}

Status DiskFrameCache::reload() {
  // In pieces, so a 64 GiB cache (a million records) needs no 32 MiB buffer.
  constexpr uint32_t kBatch = 8192;
  std::vector<std::byte> buf;
  std::vector<uint32_t> free_slots;
  for (uint32_t first = 0; first < slots_; first += kBatch) {
    const uint32_t n = std::min(kBatch, slots_ - first);
    buf.resize(uint64_t{n} * kRecordBytes);
    PBD_RETURN_IF_ERROR(pread_all(records_fd_.get(), buf, kHeaderBytes + uint64_t{first} * kRecordBytes));
    MutexLock lock(&mu_);
    for (uint32_t i = 0; i < n; ++i) {
      const std::byte* r = buf.data() + uint64_t{i} * kRecordBytes;
      const uint32_t slot = first + i;
      Key key{get_u64(r), get_u64(r + 8), get_u32(r + 16), get_u32(r + 20)};
      const bool valid = get_u32(r + 24) == kRecordMagic &&
                         get_u32(r + 28) == crc32c(std::span<const std::byte>(r, 28)) && key.stored_len != 0 &&
                         key.stored_len <= kSlotBytes;
      // A key in two slots: a crash between an eviction and its slot's
      // new record. The first is kept.
      if (!valid || map_.count(key) != 0) {
        free_slots.push_back(slot);
        continue;
      }
      probation_.push_back(key);
      map_[key] = Entry{slot, false, std::prev(probation_.end())};
      stats_.bytes += key.stored_len;
      ++stats_.frames;
    }
  }
  // Low slots are used first: the file stays dense at the front.
  std::reverse(free_slots.begin(), free_slots.end());
  MutexLock lock(&mu_);
  free_ = std::move(free_slots);
  return Status::OK();
}

void DiskFrameCache::unlink_locked(Key key, Entry& entry) {
  if (entry.protected_) {
    protected_.erase(entry.pos);
    --protected_count_;
  } else {
    probation_.erase(entry.pos);
  }
  stats_.bytes -= key.stored_len;
  --stats_.frames;
  ++generation_[entry.slot];
  map_.erase(key);  // `entry` refers into the map: last
}

void DiskFrameCache::touch_locked(const Key& key, Entry& entry) {
  if (entry.protected_) {
    protected_.splice(protected_.begin(), protected_, entry.pos);
    return;
  }
  probation_.erase(entry.pos);
  protected_.push_front(key);
  entry.pos = protected_.begin();
  entry.protected_ = true;
  ++protected_count_;
  if (protected_count_ > protected_max_) {
    const Key demoted = protected_.back();
    Entry& d = map_.at(demoted);
    protected_.pop_back();
    --protected_count_;
    probation_.push_front(demoted);
    d.pos = probation_.begin();
    d.protected_ = false;
  }
}

uint32_t DiskFrameCache::claim_slot_locked() {
  if (!free_.empty()) {
    const uint32_t slot = free_.back();
    free_.pop_back();
    ++generation_[slot];
    return slot;
  }
  std::list<Key>& from = !probation_.empty() ? probation_ : protected_;
  if (from.empty()) return kNoSlot;
  const Key victim = from.back();
  Entry& e = map_.at(victim);
  const uint32_t slot = e.slot;
  unlink_locked(victim, e);
  ++stats_.evictions;
  return slot;
}

void DiskFrameCache::clear_record(uint32_t slot) {
  const std::vector<std::byte> zeros(kRecordBytes);
  // Best effort: a stale record fails its frame's crc at the next get().
  (void)pwrite_all(records_fd_.get(), zeros, kHeaderBytes + uint64_t{slot} * kRecordBytes);
}

bool DiskFrameCache::get(uint64_t seq, const FrameRef& ref, std::vector<std::byte>* out) {
  out->resize(ref.stored_len);
  return read(seq, ref, *out, false);
}

bool DiskFrameCache::get_cached(uint64_t seq, const FrameRef& ref, std::span<std::byte> out) {
  return out.size() == ref.stored_len && read(seq, ref, out, true);
}

std::span<const std::byte> DiskFrameCache::PendingObject::bytes_of(const FrameRef& ref) const {
  if (ref.offset < base || ref.offset - base + ref.stored_len > object->size()) return {};
  return std::span<const std::byte>(*object).subspan(ref.offset - base, ref.stored_len);
}

bool DiskFrameCache::read_pending(const PendingObject& pending, const FrameRef& ref, std::span<std::byte> out) {
  // The object is the segment as stored; a frame that does not match its
  // crc (a FrameRef of another object under this seq) is a miss.
  const std::span<const std::byte> bytes = pending.bytes_of(ref);
  const bool good = !bytes.empty() && out.size() == bytes.size() && crc32c(bytes) == ref.crc;
  if (good) std::memcpy(out.data(), bytes.data(), out.size());
  MutexLock lock(&mu_);
  if (good) {
    ++stats_.hits;
  } else {
    ++stats_.misses;
  }
  return good;
}

bool DiskFrameCache::read(uint64_t seq, const FrameRef& ref, std::span<std::byte> out, bool cached_only) {
  const Key key = key_of(seq, ref);
  uint32_t slot = 0;
  uint64_t generation = 0;
  std::optional<PendingObject> queued;
  {
    MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it == map_.end()) {
      for (const PendingObject& p : pending_) {
        if (p.seq == seq && !p.bytes_of(ref).empty()) queued = PendingObject{p.seq, p.object, {}, p.base};
      }
      if (!queued) {
        ++stats_.misses;
        return false;
      }
    } else {
      slot = it->second.slot;
      generation = generation_[slot];
      touch_locked(it->first, it->second);
    }
  }
  if (queued) return read_pending(*queued, ref, out);
  if (cached_only) {
    struct iovec iov {
      out.data(), out.size()
    };
    const ssize_t n = ::preadv2(frames_fd_.get(), &iov, 1, static_cast<off_t>(uint64_t{slot} * kSlotBytes), RWF_NOWAIT);
    if (n != static_cast<ssize_t>(out.size())) return false;  // not cached (or short): the fetcher reads it
  }
  const Status read = cached_only ? Status::OK() : pread_all(frames_fd_.get(), out, uint64_t{slot} * kSlotBytes);
  const bool good = read.ok() && crc32c(out) == ref.crc;
  MutexLock lock(&mu_);
  if (generation_[slot] != generation) {  // evicted or dropped while we read: not ours any more
    ++stats_.misses;
    return false;
  }
  if (good) {
    ++stats_.hits;
    return true;
  }
  ++stats_.misses;
  if (!read.ok()) {
    ++stats_.io_errors;
    lock.unlock();
    log::get("engine")->warn("disk cache read failed dir={} error={}", dir_, log::quote(read.ToString()));
    return false;
  }
  // Bad bytes on disk (a torn write before a crash, a failing disk): drop
  // the entry so the frame is fetched again; never serve it. Its slot stays
  // claimed until its record is cleared.
  ++stats_.crc_drops;
  auto it = map_.find(key);
  if (it != map_.end()) unlink_locked(it->first, it->second);
  lock.unlock();
  log::get("engine")->warn(
      "disk cache frame failed its crc, dropped and fetched again dir={} seq={} offset={} length={}", dir_, seq,
      ref.offset, ref.stored_len);
  clear_record(slot);
  lock.lock();
  free_.push_back(slot);
  return false;
}

void DiskFrameCache::put(uint64_t seq, const FrameRef& ref, std::span<const std::byte> stored) {
  if (stored.size() != ref.stored_len || stored.empty() || stored.size() > kSlotBytes) return;
  // Before anything is evicted for it: a frame that does not match its crc
  // would only be dropped at its first get().
  if (crc32c(stored) != ref.crc) return;
  const Key key = key_of(seq, ref);
  uint32_t slot = kNoSlot;
  {
    MutexLock lock(&mu_);
    if (map_.count(key) != 0 || inserting_.count(key) != 0) return;
    slot = claim_slot_locked();
    if (slot == kNoSlot) return;
    inserting_.insert(key);
  }
  // The old record cleared, the frame, then its record: a crash between
  // leaves no record or a whole one, never the slot's old record over new
  // bytes; a torn frame under a whole record fails its crc at get().
  clear_record(slot);
  Status st = pwrite_all(frames_fd_.get(), stored, uint64_t{slot} * kSlotBytes);
  if (st.ok()) {
    st = pwrite_all(records_fd_.get(), encode_record(seq, ref.offset, ref.stored_len, ref.crc),
                    kHeaderBytes + uint64_t{slot} * kRecordBytes);
  }
  MutexLock lock(&mu_);
  inserting_.erase(key);
  if (!st.ok()) {
    ++stats_.io_errors;
    free_.push_back(slot);
    const bool first = !write_warned_;
    write_warned_ = true;
    lock.unlock();
    // Once: a full disk would fail every insert.
    if (first)
      log::get("engine")->warn("disk cache write failed, frames go uncached dir={} error={}", dir_,
                               log::quote(st.ToString()));
    return;
  }
  probation_.push_front(key);
  map_[key] = Entry{slot, false, probation_.begin()};
  stats_.bytes += key.stored_len;
  ++stats_.frames;
  ++stats_.inserts;
}

void DiskFrameCache::put_object(uint64_t seq, std::shared_ptr<const std::vector<std::byte>> object,
                                std::vector<FrameRef> frames, uint64_t base) {
  if (object == nullptr || frames.empty()) return;
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    if (!pending_.empty() && pending_bytes_ + object->size() > pending_max_) {
      stats_.skipped += frames.size();
      return;
    }
    pending_bytes_ += object->size();
    pending_.push_back(PendingObject{seq, std::move(object), std::move(frames), base});
    if (!writer_.joinable()) {
      writer_ = std::thread([this] {
        name_this_thread("disk-cache");
        write_pending();
      });
    }
  }
  pending_cv_.notify_one();
}

void DiskFrameCache::write_pending() {
  for (;;) {
    PendingObject job;
    {
      MutexLock lock(&mu_);
      while (pending_.empty() && !stopping_) pending_cv_.wait(lock);
      if (pending_.empty()) return;  // stopping, and everything queued is written
      job = pending_.front();        // stays queued (readers use it) until written
      writing_ = true;
      writing_dropped_ = false;
    }
    for (const FrameRef& ref : job.frames) {
      const std::span<const std::byte> bytes = job.bytes_of(ref);
      if (!bytes.empty()) put(job.seq, ref, bytes);
    }
    bool dropped;
    {
      MutexLock lock(&mu_);
      dropped = writing_dropped_;
      writing_ = false;
      pending_bytes_ -= job.object->size();
      pending_.pop_front();
    }
    // GC deleted the segment while its frames were being written: the ones
    // written before the drop are gone, these go now.
    if (dropped) drop_segments({job.seq});
    settled_cv_.notify_all();
  }
}

void DiskFrameCache::settle() {
  MutexLock lock(&mu_);
  while (!pending_.empty()) settled_cv_.wait(lock);
}

uint64_t DiskFrameCache::drop_segments(const std::unordered_set<uint64_t>& seqs) {
  if (seqs.empty()) return 0;
  std::vector<uint32_t> slots;
  {
    MutexLock lock(&mu_);
    // Queued objects of these segments are not written at all; the one being
    // written is dropped by the writer once it is done.
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (!seqs.contains(it->seq)) {
        ++it;
      } else if (writing_ && it == pending_.begin()) {
        writing_dropped_ = true;
        ++it;
      } else {
        pending_bytes_ -= it->object->size();
        it = pending_.erase(it);
      }
    }
    for (auto it = map_.begin(); it != map_.end();) {
      auto next = std::next(it);
      if (seqs.contains(it->first.seq)) {
        slots.push_back(it->second.slot);
        unlink_locked(it->first, it->second);  // erases `it` only
      }
      it = next;
    }
    stats_.dropped += slots.size();
  }
  settled_cv_.notify_all();  // settle() may have waited for an object dropped here
  // Out of every list and not free yet: no one writes these slots while their
  // records are cleared, so a restart cannot bring the frames back.
  for (uint32_t slot : slots) clear_record(slot);
  MutexLock lock(&mu_);
  free_.insert(free_.end(), slots.begin(), slots.end());
  return slots.size();
}

DiskFrameCacheStats DiskFrameCache::stats() const {
  MutexLock lock(&mu_);
  DiskFrameCacheStats s = stats_;
  s.pending_bytes = pending_bytes_;
  return s;
}

}  // namespace portalbd
