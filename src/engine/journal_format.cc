// The journal's files (journal.h draws the format and J1-J3): encoding and
// checking record headers and the meta file, laying out a new ring of
// zero-filled chunks, the recovery scan that Open runs (follow each chunk's
// chain, link the chains across chunks, find damage and a torn tail, read the
// live records back), and Discard. The writer that appends to the ring is
// journal.cc; it shares only what journal_format.h declares.
#include "src/engine/journal_format.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>

#include "src/log/log.h"
#include "src/util/crc32c.h"
#include "src/util/endian.h"

namespace portalbd {
namespace fs = std::filesystem;
namespace journal_format {

namespace {

constexpr char kMagic[8] = {'P', 'B', 'D', 'J', 'R', 'E', 'C', '1'};
constexpr uint64_t kAlign = Journal::kAlign;
constexpr uint64_t kHeaderBytes = Journal::kHeaderBytes;
constexpr uint64_t kBlockBytes = Journal::kBlockBytes;
constexpr uint64_t kMinChunkBytes = 16 * 1024;
constexpr uint64_t kMaxChunks = 10000;  // chunk-0000 .. chunk-9999
constexpr uint64_t kCrcOffset = 12;

uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

std::string chunk_name(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "chunk-%04llu", static_cast<unsigned long long>(i));
  return buf;
}

// ---- Records ---------------------------------------------------------------

uint64_t record_bytes(const Header& h) { return align_up(kHeaderBytes + h.payload_bytes); }

std::vector<std::byte> encode_header(const Header& h) {
  std::vector<std::byte> out;
  out.reserve(kHeaderBytes);
  for (char c : kMagic) out.push_back(static_cast<std::byte>(c));
  put_u8(&out, static_cast<uint8_t>(Journal::kFormatVersion & 0xff));
  put_u8(&out, static_cast<uint8_t>(Journal::kFormatVersion >> 8));
  put_u8(&out, h.kind);
  put_u8(&out, h.state);
  put_u32(&out, 0);  // header CRC, below
  put_u64(&out, h.journal_id);
  put_u64(&out, h.wseq);
  put_u64(&out, h.lba);
  put_u64(&out, h.nblocks);
  put_u64(&out, h.synced_wseq);
  put_u64(&out, h.released_wseq);
  put_u32(&out, h.payload_bytes);
  put_u32(&out, h.payload_crc);
  put_u64(&out, 0);
  const uint32_t crc = crc32c(out);
  for (int i = 0; i < 4; ++i) out[kCrcOffset + i] = std::byte(static_cast<uint8_t>(crc >> (8 * i)));
  return out;
}

namespace {

// Parses the record at p (`avail` bytes to the end of its chunk). Returns ""
// and fills *h for a whole record of this journal, else why not.
std::string parse_record(const std::byte* p, uint64_t avail, uint64_t journal_id, Header* h, bool* has_magic) {
  *has_magic = avail >= kHeaderBytes && std::memcmp(p, kMagic, sizeof kMagic) == 0;
  if (!*has_magic) return "no record header";
  const unsigned version = static_cast<uint8_t>(p[8]) | (static_cast<unsigned>(static_cast<uint8_t>(p[9])) << 8);
  std::byte copy[kHeaderBytes];
  std::memcpy(copy, p, kHeaderBytes);
  std::memset(copy + kCrcOffset, 0, 4);
  if (crc32c(std::span<const std::byte>(copy, kHeaderBytes)) != get_u32(p + kCrcOffset)) {
    return "header checksum mismatch";
  }
  if (version != Journal::kFormatVersion) return "record format version " + std::to_string(version) + " is unknown";
  h->kind = static_cast<uint8_t>(p[10]);
  h->state = static_cast<uint8_t>(p[11]);
  h->journal_id = get_u64(p + 16);
  h->wseq = get_u64(p + 24);
  h->lba = get_u64(p + 32);
  h->nblocks = get_u64(p + 40);
  h->synced_wseq = get_u64(p + 48);
  h->released_wseq = get_u64(p + 56);
  h->payload_bytes = get_u32(p + 64);
  h->payload_crc = get_u32(p + 68);
  if (h->journal_id != journal_id) return "record of another journal";
  if (h->kind == kKindPad) {
    if (h->payload_bytes != 0) return "malformed pad";
    return "";
  }
  if (h->kind == kKindMarker) {
    if (h->wseq == 0 || h->nblocks == 0 || h->payload_bytes != 0) return "malformed marker";
    return "";
  }
  const bool data = h->state == static_cast<uint8_t>(ExtentState::kData);
  if (h->kind != kKindWrite || h->state > static_cast<uint8_t>(ExtentState::kHole) || h->wseq == 0 ||
      h->nblocks == 0 || (data && h->nblocks * kBlockBytes != h->payload_bytes) || (!data && h->payload_bytes != 0)) {
    return "malformed record header";
  }
  if (h->payload_bytes > avail - kHeaderBytes) return "payload runs past the end of the chunk";
  if (crc32c(std::span<const std::byte>(p + kHeaderBytes, h->payload_bytes)) != h->payload_crc) {
    return "payload checksum mismatch";
  }
  return "";
}

// ---- Files -----------------------------------------------------------------

std::string encode_meta(const Meta& m) {
  char id[24];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(m.journal_id));
  std::string body = "portalbd-journal " + std::to_string(m.version) + "\nvolume_uuid " + m.volume_uuid +
                     "\nwriter_id " + m.writer_id + "\njournal_id " + id + "\nchunk_bytes " +
                     std::to_string(m.chunk_bytes) + "\nchunk_count " + std::to_string(m.chunk_count) + "\n";
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", crc32c(std::span(reinterpret_cast<const std::byte*>(body.data()), body.size())));
  return body + "crc32c " + crc + "\n";
}

Result<Meta> decode_meta(const std::string& text, const std::string& path) {
  auto bad = [&](const std::string& why) { return Status::Corruption("journal meta " + path + ": " + why); };
  const size_t crc_at = text.rfind("crc32c ");
  if (crc_at == std::string::npos || (crc_at > 0 && text[crc_at - 1] != '\n')) return bad("no checksum line");
  const std::string body = text.substr(0, crc_at);
  char want[16];
  std::snprintf(want, sizeof want, "%08x", crc32c(std::span(reinterpret_cast<const std::byte*>(body.data()), body.size())));
  if (text.compare(crc_at, std::string::npos, std::string("crc32c ") + want + "\n") != 0) {
    return bad("checksum mismatch (torn or edited)");
  }
  std::map<std::string, std::string> fields;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    if (eol == std::string::npos) return bad("unterminated line");
    const std::string line = body.substr(pos, eol - pos);
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) return bad("malformed line \"" + line + "\"");
    fields[line.substr(0, sp)] = line.substr(sp + 1);
    pos = eol + 1;
  }
  Meta m;
  try {
    if (!fields.count("portalbd-journal")) return bad("not a portalbd journal meta");
    m.version = static_cast<uint32_t>(std::stoul(fields.at("portalbd-journal")));
    if (m.version != Journal::kFormatVersion) {
      return Status::NotSupported("journal " + path + " has format version " + std::to_string(m.version) +
                                  "; this portalbd reads version " + std::to_string(Journal::kFormatVersion));
    }
    m.volume_uuid = fields.at("volume_uuid");
    m.writer_id = fields.at("writer_id");
    m.journal_id = std::stoull(fields.at("journal_id"), nullptr, 16);
    m.chunk_bytes = std::stoull(fields.at("chunk_bytes"));
    m.chunk_count = std::stoull(fields.at("chunk_count"));
  } catch (const std::exception& e) {
    return bad(std::string("missing or malformed field (") + e.what() + ")");
  }
  if (m.chunk_bytes < kMinChunkBytes || m.chunk_bytes % kBlockBytes != 0 || m.chunk_count < 2 ||
      m.chunk_count > kMaxChunks) {
    return bad("impossible geometry");
  }
  return m;
}

}  // namespace

Status write_meta(const std::string& dir, int dir_fd, const Meta& m) {
  const std::string tmp = dir + "/meta.tmp";
  const std::string text = encode_meta(m);
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return Status::IOError(errno_text("create " + tmp));
    PBD_RETURN_IF_ERROR(write_all(fd.get(), std::span(reinterpret_cast<const std::byte*>(text.data()), text.size()))
                            .With("write " + tmp));
    PBD_RETURN_IF_ERROR(fsync_fd(fd.get(), tmp));
  }
  if (::rename(tmp.c_str(), (dir + "/meta").c_str()) != 0) return Status::IOError(errno_text("rename " + tmp));
  return fsync_fd(dir_fd, dir);
}

namespace {

// The chunk files and leftovers of ours in dir (not meta).
std::vector<std::string> our_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("chunk-", 0) == 0 || name == "meta.tmp") out.push_back(e.path().string());
  }
  return out;
}

Status remove_journal_files(const std::string& dir, int dir_fd) {
  const std::string meta = dir + "/meta";
  if (::unlink(meta.c_str()) != 0 && errno != ENOENT) return Status::IOError(errno_text("remove " + meta));
  PBD_RETURN_IF_ERROR(fsync_fd(dir_fd, dir));  // no meta first: a crash part-way leaves a journal to recreate
  for (const auto& path : our_files(dir)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::IOError(errno_text("remove " + path));
  }
  return fsync_fd(dir_fd, dir);
}

Result<UniqueFd> lock_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Status::IOError(errno_text("open journal dir " + dir));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::Busy("journal " + dir + " is in use by another portalbd (or another Journal in this process)");
    }
    return Status::IOError(errno_text("lock journal dir " + dir));
  }
  return fd;
}

}  // namespace

Status zero_chunk(int fd, const std::string& path, uint64_t chunk_bytes) {
  const std::vector<std::byte> zeros(std::min<uint64_t>(chunk_bytes, 1 << 20));
  for (uint64_t off = 0; off < chunk_bytes; off += zeros.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), chunk_bytes - off));
    PBD_RETURN_IF_ERROR(pwrite_all(fd, std::span(zeros.data(), n), off).With("write " + path));
  }
  return fdatasync_fd(fd, path);
}

namespace {

// Creates the chunk files, then meta, the commit point. Chunk 0, where
// appends start, is written full of zeros now; the others only get their
// blocks reserved (fallocate: the space is taken, so a full disk shows here,
// and they read as zeros) and are written with zeros later, one ahead of the
// head (Journal's zeroer), so that a new journal costs one chunk's write at
// start instead of the whole ring's. Where fallocate is not supported, every
// chunk is written with zeros now. *unwritten says which chunks wait for it.
Status create_journal(const std::string& dir, int dir_fd, const Meta& m, std::vector<UniqueFd>* fds,
                      std::vector<bool>* unwritten) {
  fds->clear();
  unwritten->assign(m.chunk_count, false);
  for (uint64_t i = 0; i < m.chunk_count; ++i) {
    const std::string path = dir + "/" + chunk_name(i);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return Status::IOError(errno_text("create " + path));
    bool reserved = false;
    if (i > 0) {
      if (::fallocate(fd.get(), 0, 0, static_cast<off_t>(m.chunk_bytes)) == 0) {
        reserved = true;
      } else if (errno != EOPNOTSUPP && errno != ENOSYS) {
        return Status::IOError(errno_text("reserve " + std::to_string(m.chunk_bytes) + " bytes for " + path));
      }
    }
    if (reserved) {
      PBD_RETURN_IF_ERROR(fdatasync_fd(fd.get(), path));
      (*unwritten)[i] = true;
    } else {
      PBD_RETURN_IF_ERROR(zero_chunk(fd.get(), path, m.chunk_bytes));
    }
    fds->push_back(std::move(fd));
  }
  PBD_RETURN_IF_ERROR(fsync_fd(dir_fd, dir));
  return write_meta(dir, dir_fd, m);
}

uint64_t random_journal_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (static_cast<uint64_t>(rd()) << 32) | rd();
  return id;
}

// ---- Recovery --------------------------------------------------------------

struct Found {
  uint64_t offset = 0;
  Header h;
};

// One chunk as read: the chain of J1 from offset 0 and what ends it.
struct ChunkScan {
  std::vector<Found> chain;        // records, consecutive wseqs
  std::optional<Found> pad;        // the pad ending the chain
  uint64_t end_offset = 0;         // where the chain's records end
  bool broken = false;             // ended on a damaged or out-of-sequence record
  bool broken_had_magic = false;   // ... that at least started like a record
  std::string broken_reason;
  std::vector<Found> orphans;      // whole records and pads past the end
  uint64_t first() const { return chain.empty() ? 0 : chain.front().h.wseq; }
  uint64_t last() const { return chain.empty() ? 0 : chain.back().h.wseq; }
};

ChunkScan scan_chunk(const std::vector<std::byte>& buf, uint64_t journal_id) {
  ChunkScan s;
  const uint64_t size = buf.size();
  uint64_t off = 0;
  uint64_t resync_from = size;
  while (off + kAlign <= size) {
    Header h;
    bool magic = false;
    std::string why = parse_record(buf.data() + off, size - off, journal_id, &h, &magic);
    if (!why.empty()) {
      s.broken = true;
      s.broken_had_magic = magic;
      s.broken_reason = why;
      resync_from = off + kAlign;
      break;
    }
    if (h.kind == kKindPad) {
      if (!s.chain.empty() && h.wseq == s.last()) s.pad = Found{off, h};
      resync_from = off + kAlign;
      break;
    }
    if (!s.chain.empty() && h.wseq != s.last() + 1) {
      if (h.wseq > s.last() + 1) {
        s.broken = true;
        s.broken_had_magic = true;
        s.broken_reason = "record out of sequence (wseq " + std::to_string(h.wseq) + " after " +
                          std::to_string(s.last()) + ")";
      }
      resync_from = off;  // an older lap's record (or the out-of-sequence one): an orphan
      break;
    }
    s.chain.push_back(Found{off, h});
    off += record_bytes(h);
  }
  s.end_offset = std::min(off, size);
  for (uint64_t o = resync_from; o + kAlign <= size;) {
    Header h;
    bool magic = false;
    if (parse_record(buf.data() + o, size - o, journal_id, &h, &magic).empty()) {
      s.orphans.push_back(Found{o, h});
      o += record_bytes(h);
    } else {
      o += kAlign;
    }
  }
  return s;
}

// What Open hands the new Journal.
struct Recovered {
  JournalRecovery report;
  uint64_t head = 0;
  std::vector<uint64_t> run;  // chunks holding the linked run, oldest first (ends at head)
  std::vector<ChunkScan> scans;
};

Status analyse(const std::string& dir, std::vector<ChunkScan> scans, Recovered* out) {
  const uint64_t n = scans.size();
  auto where = [&](uint64_t c, uint64_t off) {
    return dir + "/" + chunk_name(c) + " offset " + std::to_string(off);
  };
  uint64_t newest = 0, head = 0, released = 0;
  for (uint64_t c = 0; c < n; ++c) {
    const ChunkScan& s = scans[c];
    if (s.last() > newest) {
      newest = s.last();
      head = c;
    }
    for (const Found& f : s.chain) released = std::max(released, f.h.released_wseq);
    if (s.pad) released = std::max(released, s.pad->h.released_wseq);
  }
  // A whole record newer than the newest chained one: something in front of
  // it in its chunk is damaged.
  for (uint64_t c = 0; c < n; ++c) {
    const ChunkScan& s = scans[c];
    for (const Found& o : s.orphans) {
      if (o.h.wseq <= newest) continue;
      const uint64_t expected = (s.chain.empty() ? scans[(c + n - 1) % n].last() : s.last()) + 1;
      std::string msg = "journal record at " + where(c, s.end_offset) + " (wseq " + std::to_string(expected) +
                        " expected) is damaged (" +
                        (s.broken ? s.broken_reason : std::string("unreadable")) +
                        ") but a newer whole record follows it (wseq " + std::to_string(o.h.wseq) + " at " +
                        where(c, o.offset) + ")";
      if (o.h.synced_wseq >= expected) {
        msg += "; wseq " + std::to_string(expected) + " had been synced before that record was written";
      } else {
        msg += "; no later record says the damaged one was synced, so this may also be a power loss that kept a "
               "later unsynced write but not an earlier one. Discarding the journal loses the writes not yet in "
               "object storage";
      }
      return Status::Corruption(msg);
    }
  }
  Recovered& r = *out;
  r.report.newest_wseq = newest;
  r.report.released_wseq = released;
  r.head = head;
  if (newest == 0) {
    r.scans = std::move(scans);
    return Status::OK();
  }
  // J2: link the laps backwards from the head.
  r.run.push_back(head);
  for (uint64_t i = 1; i < n; ++i) {
    const uint64_t c = (r.run.front() + n - 1) % n;
    if (scans[c].chain.empty() || scans[c].last() + 1 != scans[r.run.front()].first()) break;
    r.run.insert(r.run.begin(), c);
  }
  const uint64_t oldest = scans[r.run.front()].first();
  if (oldest > released + 1) {
    std::string at;
    if (r.run.size() == n) {
      at = "the ring holds nothing before " + where(r.run.front(), 0);
    } else {
      const uint64_t c = (r.run.front() + n - 1) % n;
      const ChunkScan& s = scans[c];
      at = s.broken ? where(c, s.end_offset) + " is damaged (" + s.broken_reason + ")"
                    : dir + "/" + chunk_name(c) + " ends at offset " + std::to_string(s.end_offset) +
                          (s.chain.empty() ? " with no record"
                                           : " after wseq " + std::to_string(s.last()));
    }
    return Status::Corruption("journal " + dir + " is missing live records: wseq " + std::to_string(released + 1) +
                               " to " + std::to_string(oldest - 1) + " are not released but not found; " + at);
  }
  // A torn tail: the head's chain, or the next chunk's first record, was
  // cut short by a crash mid-append.
  const ChunkScan& hs = scans[head];
  const uint64_t after = (head + 1) % n;
  const ChunkScan& as = scans[after];
  if (hs.broken && hs.broken_had_magic) {
    r.report.torn_tail = chunk_name(head) + " offset " + std::to_string(hs.end_offset) + ": " + hs.broken_reason;
  } else if (after != head && as.chain.empty() && as.broken && as.broken_had_magic) {
    r.report.torn_tail = chunk_name(after) + " offset 0: " + as.broken_reason;
  }
  r.scans = std::move(scans);
  return Status::OK();
}

Status check_options(const JournalOptions& opts) {
  if (opts.dir.empty()) return Status::InvalidArgument("journal: no directory given");
  if (opts.volume_uuid.empty() || opts.volume_uuid.find('\n') != std::string::npos ||
      opts.writer_id.find('\n') != std::string::npos) {
    return Status::InvalidArgument("journal: volume_uuid must be one non-empty line, writer_id one line");
  }
  if (opts.chunk_bytes < kMinChunkBytes || opts.chunk_bytes % kBlockBytes != 0) {
    return Status::InvalidArgument("journal: chunk_bytes must be a multiple of 4096 and at least 16384, not " +
                                   std::to_string(opts.chunk_bytes));
  }
  const uint64_t chunks = opts.capacity_bytes / opts.chunk_bytes;
  if (chunks < 2 || chunks > kMaxChunks) {
    return Status::InvalidArgument("journal: capacity_bytes must hold 2 to 10000 chunks of chunk_bytes (" +
                                   std::to_string(opts.capacity_bytes) + " / " + std::to_string(opts.chunk_bytes) +
                                   ")");
  }
  return Status::OK();
}

// The meta in dir; nullopt when there is none.
Result<std::optional<Meta>> read_meta(const std::string& dir) {
  const std::string path = dir + "/meta";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<Meta>();
    return Status::IOError(errno_text("open " + path));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::IOError(errno_text("stat " + path));
  std::string text(static_cast<size_t>(st.st_size), '\0');
  PBD_RETURN_IF_ERROR(
      pread_all(fd.get(), std::span(reinterpret_cast<std::byte*>(text.data()), text.size()), 0).With("read " + path));
  auto meta = decode_meta(text, path);
  if (!meta.ok()) return meta.status();
  return std::optional<Meta>(std::move(meta).value());
}

// Opens meta's chunk files, checks their size and makes what they hold
// durable: the last process may have been killed before it synced, and the
// caller is about to act on what recovery reads.
Result<std::vector<UniqueFd>> open_chunks(const std::string& dir, const Meta& meta) {
  std::vector<UniqueFd> fds;
  for (uint64_t i = 0; i < meta.chunk_count; ++i) {
    const std::string path = dir + "/" + chunk_name(i);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) return Status::Corruption("journal " + dir + " has a meta but no " + chunk_name(i));
      return Status::IOError(errno_text("open " + path));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Status::IOError(errno_text("stat " + path));
    if (static_cast<uint64_t>(st.st_size) != meta.chunk_bytes) {
      return Status::Corruption("journal chunk " + path + " is " + std::to_string(st.st_size) + " bytes, not " +
                                std::to_string(meta.chunk_bytes));
    }
    PBD_RETURN_IF_ERROR(fdatasync_fd(fd.get(), path));
    fds.push_back(std::move(fd));
  }
  return fds;
}

// Reads and checks every chunk (see "Recovery" in journal.h), then the live
// records' payloads.
Result<Recovered> recover(const std::string& dir, const Meta& meta, const std::vector<UniqueFd>& fds) {
  std::vector<ChunkScan> scans;
  std::vector<std::byte> buf(meta.chunk_bytes);
  for (uint64_t i = 0; i < fds.size(); ++i) {
    PBD_RETURN_IF_ERROR(pread_all(fds[i].get(), buf, 0).With("read " + dir + "/" + chunk_name(i)));
    scans.push_back(scan_chunk(buf, meta.journal_id));
  }
  Recovered rec;
  PBD_RETURN_IF_ERROR(analyse(dir, std::move(scans), &rec));
  for (uint64_t c : rec.run) {
    for (const Found& f : rec.scans[c].chain) {
      if (f.h.wseq <= rec.report.released_wseq) continue;
      if (f.h.kind == kKindMarker) continue;  // its data is not here: nothing to replay
      JournalRecord r;
      r.wseq = f.h.wseq;
      r.lba = f.h.lba;
      r.nblocks = f.h.nblocks;
      r.state = static_cast<ExtentState>(f.h.state);
      r.data.resize(f.h.payload_bytes);
      PBD_RETURN_IF_ERROR(pread_all(fds[c].get(), r.data, f.offset + kHeaderBytes).With("read " + chunk_name(c)));
      if (crc32c(r.data) != f.h.payload_crc) {
        return Status::Corruption("journal record at " + dir + "/" + chunk_name(c) + " offset " +
                                  std::to_string(f.offset) + " changed while being recovered");
      }
      rec.report.records.push_back(std::move(r));
    }
  }
  rec.report.previous_writer_id = meta.writer_id;
  return rec;
}

}  // namespace

Result<OpenedFiles> open_files(const JournalOptions& opts) {
  PBD_RETURN_IF_ERROR(check_options(opts));
  const uint64_t want_chunks = opts.capacity_bytes / opts.chunk_bytes;
  auto logger = log::get("journal");
  const std::string dir = opts.dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return Status::IOError("create journal dir " + dir + ": " + ec.message());
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  auto dir_fd = lock_dir(dir);
  if (!dir_fd.ok()) return dir_fd.status();
  auto found = read_meta(dir);
  if (!found.ok()) return found.status();

  // Recover what is there; a new geometry applies only when nothing is live.
  Meta meta;
  Recovered rec;
  std::vector<UniqueFd> fds;
  std::vector<bool> unwritten;
  bool create = !*found;
  if (*found) {
    meta = **found;
    auto opened_fds = open_chunks(dir, meta);
    if (!opened_fds.ok()) return opened_fds.status();
    fds = std::move(opened_fds).value();
    auto recovered = recover(dir, meta, fds);
    if (!recovered.ok()) return recovered.status();
    rec = std::move(recovered).value();
    if (!rec.report.torn_tail.empty()) {
      logger->warn("journal torn tail cut at the last whole record dir={} at={} newest_wseq={}", log::quote(dir),
                   log::quote(rec.report.torn_tail), rec.report.newest_wseq);
    }
    if (meta.volume_uuid != opts.volume_uuid) {
      // The state dir now serves another volume. With nothing live the old
      // journal is only files; with live records it holds writes that volume
      // answered and storage may lack: never drop those.
      if (!rec.report.records.empty()) {
        return Status::InvalidArgument(
            "journal " + dir + " belongs to volume " + meta.volume_uuid + ", not " + opts.volume_uuid + ", and holds " +
            std::to_string(rec.report.records.size()) +
            " writes of it not known to be in storage: start that volume once to upload them, give this volume its "
            "own journal dir, or discard that journal");
      }
      logger->warn("journal of another volume, with nothing live, laid out anew for this one dir={} was_volume={} "
                   "volume={}",
                   log::quote(dir), meta.volume_uuid, opts.volume_uuid);
      fds.clear();
      PBD_RETURN_IF_ERROR(remove_journal_files(dir, dir_fd->get()));
      rec = Recovered{};
      rec.report.created = true;
      create = true;
    } else if (meta.chunk_bytes != opts.chunk_bytes || meta.chunk_count != want_chunks) {
      if (rec.report.records.empty()) {
        logger->info("journal laid out anew for new geometry dir={} chunk_bytes={} chunks={} was_chunk_bytes={} "
                     "was_chunks={}",
                     log::quote(dir), opts.chunk_bytes, want_chunks, meta.chunk_bytes, meta.chunk_count);
        fds.clear();
        PBD_RETURN_IF_ERROR(remove_journal_files(dir, dir_fd->get()));
        rec.run.clear();
        create = true;
      } else {
        logger->warn("journal keeps its geometry while it holds live records dir={} chunk_bytes={} chunks={} "
                     "asked_chunk_bytes={} asked_chunks={}",
                     log::quote(dir), meta.chunk_bytes, meta.chunk_count, opts.chunk_bytes, want_chunks);
      }
    }
  } else {
    rec.report.created = true;
    const auto leftovers = our_files(dir);
    if (!leftovers.empty()) {
      logger->warn("journal dir has chunk files but no meta, starting a new journal dir={} files={}",
                   log::quote(dir), leftovers.size());
    }
    for (const auto& path : leftovers) ::unlink(path.c_str());
  }
  if (create) {
    meta = Meta{};
    meta.volume_uuid = opts.volume_uuid;
    meta.writer_id = opts.writer_id;
    meta.journal_id = random_journal_id();
    meta.chunk_bytes = opts.chunk_bytes;
    meta.chunk_count = want_chunks;
    Status st = create_journal(dir, dir_fd->get(), meta, &fds, &unwritten);
    if (!st.ok()) {
      fds.clear();
      (void)remove_journal_files(dir, dir_fd->get());  // leave no half journal taking space
      return st.With("create journal " + dir);
    }
    logger->info("journal created dir={} chunk_bytes={} chunks={}", log::quote(dir), meta.chunk_bytes,
                 meta.chunk_count);
  }
  OpenedFiles out;
  out.dir_fd = std::move(*dir_fd);
  out.chunk_fds = std::move(fds);
  out.meta = std::move(meta);
  out.report = std::move(rec.report);
  out.unwritten = std::move(unwritten);
  out.head = rec.head;
  for (uint64_t c : rec.run) {
    const ChunkScan& s = rec.scans[c];
    out.run.push_back(RecoveredChunk{c, s.first(), s.last(), s.end_offset});
  }
  return out;
}

}  // namespace journal_format

Status Journal::Discard(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::OK();
  auto dir_fd = journal_format::lock_dir(dir);
  if (!dir_fd.ok()) return dir_fd.status();
  PBD_RETURN_IF_ERROR(journal_format::remove_journal_files(dir, dir_fd->get()));
  log::get("journal")->warn("journal discarded dir={}", log::quote(dir));
  return Status::OK();
}

}  // namespace portalbd
