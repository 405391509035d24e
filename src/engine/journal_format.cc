// The journal's files (journal.h draws the format and J1-J3): encoding and
// checking record headers, the meta and start files, laying out a new ring of
// zero-filled chunks, recovery (from the start file when it settles it, see
// "Opening"; else the ring scan: follow each chunk's chain, link the chains
// across chunks, find damage and a torn tail, read the live records back),
// and Discard. The writer that appends to the ring is
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
#include <tuple>

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

// Parses the record header at p (`avail` bytes to the end of its chunk;
// only the header's kHeaderBytes need be at p). Returns "" and fills *h for
// a well-formed header of this journal, else why not.
std::string parse_header(const std::byte* p, uint64_t avail, uint64_t journal_id, Header* h, bool* has_magic) {
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
  return "";
}

std::string check_payload(const Header& h, std::span<const std::byte> payload) {
  return crc32c(payload) == h.payload_crc ? "" : "payload checksum mismatch";
}

// parse_header, then the payload's checksum: "" for a whole record.
std::string parse_record(const std::byte* p, uint64_t avail, uint64_t journal_id, Header* h, bool* has_magic) {
  std::string why = parse_header(p, avail, journal_id, h, has_magic);
  if (!why.empty()) return why;
  return check_payload(*h, std::span<const std::byte>(p + kHeaderBytes, h->payload_bytes));
}

// A header that fails to parse but was one once (its magic or its
// journal_id is there): damage, or a record torn mid-write.
bool looks_like_ours(const std::byte* p, uint64_t journal_id) {
  return std::memcmp(p, kMagic, sizeof kMagic) == 0 || get_u64(p + 16) == journal_id;
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

// ---- The start file --------------------------------------------------------
// 56 bytes at offset 0 (little endian): magic "PBDJSTA1", u64 journal_id,
// chunk, offset, prev_wseq, released_wseq, u32 CRC32C of the bytes before it,
// u32 0. One sector: a torn write fails the checksum and is ignored.

namespace {

constexpr char kStartMagic[8] = {'P', 'B', 'D', 'J', 'S', 'T', 'A', '1'};
constexpr uint64_t kStartBytes = 56;

std::optional<LiveStart> decode_start(std::span<const std::byte> b, uint64_t journal_id) {
  if (b.size() < kStartBytes || std::memcmp(b.data(), kStartMagic, sizeof kStartMagic) != 0) return std::nullopt;
  if (crc32c(b.subspan(0, 48)) != get_u32(b.data() + 48) || get_u64(b.data() + 8) != journal_id) return std::nullopt;
  LiveStart st;
  st.chunk = get_u64(b.data() + 16);
  st.offset = get_u64(b.data() + 24);
  st.prev_wseq = get_u64(b.data() + 32);
  st.released_wseq = get_u64(b.data() + 40);
  return st;
}

}  // namespace

Status write_start(int fd, uint64_t journal_id, const LiveStart& start) {
  std::vector<std::byte> b;
  b.reserve(kStartBytes);
  for (char c : kStartMagic) b.push_back(static_cast<std::byte>(c));
  put_u64(&b, journal_id);
  put_u64(&b, start.chunk);
  put_u64(&b, start.offset);
  put_u64(&b, start.prev_wseq);
  put_u64(&b, start.released_wseq);
  put_u32(&b, crc32c(b));
  put_u32(&b, 0);
  return pwrite_all(fd, b, 0);
}

namespace {

// The chunk files and leftovers of ours in dir (not meta).
std::vector<std::string> our_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("chunk-", 0) == 0 || name == "meta.tmp" || name == "start") out.push_back(e.path().string());
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
  std::vector<ChunkScan> scans;       // the ring scan's (analyse); empty from the start file
  std::vector<RecoveredChunk> chunks;  // the run's chunks, by either way
  std::vector<RecordAt> record_at;     // parallel to report.records
  LiveStart start;                     // for the start file: the first live record, or where appends go on
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

// The record Open returns for a write record's header and payload.
JournalRecord replayed(const Header& h, std::vector<std::byte> data) {
  JournalRecord r;
  r.wseq = h.wseq;
  r.lba = h.lba;
  r.nblocks = h.nblocks;
  r.state = static_cast<ExtentState>(h.state);
  r.data = std::move(data);
  return r;
}

// Reads of the chunk files, counted (JournalRecovery::chunk_bytes_read).
struct ChunkReader {
  const std::string& dir;
  const std::vector<UniqueFd>& fds;
  uint64_t bytes = 0;
  Status read(uint64_t c, uint64_t offset, std::span<std::byte> out) {
    bytes += out.size();
    return pread_all(fds[c].get(), out, offset).With("read " + dir + "/" + chunk_name(c));
  }
};

// The start file in dir, when it is there, whole and of this journal.
std::optional<LiveStart> read_start(const std::string& dir, uint64_t journal_id) {
  UniqueFd fd(::open((dir + "/start").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::vector<std::byte> b(kStartBytes);
  if (!pread_all(fd.get(), b, 0).ok()) return std::nullopt;
  return decode_start(b, journal_id);
}

// Whether a record carries on a chain whose last record is `last`: J1 within
// a chunk; at a chunk's start also across a gap that the release watermark
// covers (release() moved the sequence, so the writer began a new chunk).
bool carries_on(const Header& h, uint64_t last, uint64_t released, bool chunk_start) {
  if (h.wseq == last + 1) return true;
  return chunk_start && h.wseq > last + 1 && h.wseq - 1 <= std::max(released, h.released_wseq);
}

// Bytes at the start of the chunk after the chain's that Open reads for a
// record newer than the chain when it does not read that chunk whole (see
// "Opening" in journal.h); also the size of each read past the end.
constexpr uint64_t kScanPastEndBytes = 1 << 20;

// Recovery from the start file ("Opening" in journal.h): follows the chain
// from `start` to its end, reading only that and each chunk's first header,
// plus the rest of the chunk it ends in and the start of the next (all of it
// when the writer may have gone on into it). nullopt, with *why_not, when the
// start does not check against the chunks or something there calls for the
// ring scan to decide (damage, a torn tail, a newer record past the end):
// then recover() reads everything as before, so every verdict stays the ring
// scan's.
Result<std::optional<Recovered>> recover_from_start(ChunkReader& rd, const Meta& meta, const LiveStart& start,
                                                    std::string* why_not) {
  const uint64_t n = meta.chunk_count, size = meta.chunk_bytes, id = meta.journal_id;
  auto scan_ring = [&](const std::string& why) {
    *why_not = why;
    return std::optional<Recovered>();
  };
  if (start.chunk >= n || start.offset % kAlign != 0 || start.offset + kAlign > size) return scan_ring("bad start");
  struct FirstHeader {
    bool parsed = false;  // a well-formed header of this journal (a record or a pad)
    bool record = false;  // a well-formed record header (not a pad)
    bool damaged = false;  // one that does not parse but was ours (looks_like_ours)
    Header h;
  };
  std::vector<FirstHeader> first(n);
  std::vector<std::byte> hbuf(kHeaderBytes);
  for (uint64_t c = 0; c < n; ++c) {
    PBD_RETURN_IF_ERROR(rd.read(c, 0, hbuf));
    bool magic = false;
    if (parse_header(hbuf.data(), size, id, &first[c].h, &magic).empty()) {
      first[c].parsed = true;
      first[c].record = first[c].h.kind != kKindPad;
    } else {
      first[c].damaged = looks_like_ours(hbuf.data(), id);
    }
  }
  // A start chunk rewritten since (the ring went round): a stale start.
  if (start.offset > 0 && first[start.chunk].record && first[start.chunk].h.wseq > start.prev_wseq) {
    return scan_ring("start chunk rewritten since");
  }

  struct Walked {
    RecordAt at;
    Header h;
    std::vector<std::byte> payload;
  };
  std::vector<Walked> walked;
  Recovered r;
  std::vector<bool> in_run(n, false);
  uint64_t last = start.prev_wseq, released = start.released_wseq;
  uint64_t c = start.chunk, off = start.offset;
  bool ended_in_pad = false;  // the chain's last chunk ends in the pad of its last record
  for (;;) {
    in_run[c] = true;
    ended_in_pad = false;
    RecoveredChunk rc{c, 0, 0, off};
    if (off > 0) {  // entered mid-lap: the records before are released
      rc.first_wseq = first[c].record ? first[c].h.wseq : 0;
      rc.last_wseq = last;
    }
    while (off + kAlign <= size) {
      PBD_RETURN_IF_ERROR(rd.read(c, off, hbuf));
      Header h;
      bool magic = false;
      if (!parse_header(hbuf.data(), size - off, id, &h, &magic).empty()) {
        if (looks_like_ours(hbuf.data(), id)) return scan_ring("damaged or torn header at the end");
        break;  // zeros, or the middle of an older lap's record
      }
      if (h.kind == kKindPad) {
        if (h.wseq == last) {
          released = std::max(released, h.released_wseq);
          ended_in_pad = true;
        }
        break;
      }
      if (!carries_on(h, last, released, off == 0)) {
        if (h.wseq > last) return scan_ring("record out of sequence");
        break;  // an older lap's record
      }
      Walked w{RecordAt{c, off}, h, std::vector<std::byte>(h.payload_bytes)};
      if (h.payload_bytes > 0) PBD_RETURN_IF_ERROR(rd.read(c, off + kHeaderBytes, w.payload));
      if (!check_payload(h, w.payload).empty()) return scan_ring("payload checksum mismatch");
      released = std::max(released, h.released_wseq);
      if (rc.first_wseq == 0) rc.first_wseq = h.wseq;
      rc.last_wseq = last = h.wseq;
      off += record_bytes(h);
      walked.push_back(std::move(w));
    }
    rc.end_offset = off;
    r.chunks.push_back(rc);
    const uint64_t next = (c + 1) % n;
    if (next == start.chunk || !first[next].record || !carries_on(first[next].h, last, released, true)) break;
    c = next;
    off = 0;
  }
  // Past the end (J1, J2: records never straddle chunks): the record after
  // the chain's last one, and anything an out-of-order power loss kept after
  // losing it, is in the rest of its chunk, or in the next chunk once the
  // writer padded this one (synced) and went on. So Open reads the rest of
  // the chunk; and the next chunk whole when the chain ends in its pad and
  // the next chunk's first header, where the writer's first record there
  // would be, is none (never written, or wiped): else its first
  // kScanPastEndBytes. Nothing newer may be found there, nor at any other
  // chunk's start (a chunk is entered only once the one before is synced,
  // so nothing newer lies further), nor a torn first record in the next chunk.
  const uint64_t end_chunk = c, end_offset = off, after = (c + 1) % n;
  const uint64_t after_bytes = ended_in_pad && !first[after].parsed ? size : std::min(kScanPastEndBytes, size);
  std::vector<std::byte> window;
  for (const auto& [chunk, from, to] :
       {std::tuple{end_chunk, end_offset, size}, std::tuple{after, uint64_t{0}, after_bytes}}) {
    for (uint64_t at = from; at + kAlign <= to; at += window.size()) {
      window.resize(std::min(kScanPastEndBytes, (to - at) / kAlign * kAlign));
      PBD_RETURN_IF_ERROR(rd.read(chunk, at, window));
      for (uint64_t o = 0; o + kAlign <= window.size(); o += kAlign) {
        Header h;
        bool magic = false;
        if (parse_header(window.data() + o, size - at - o, id, &h, &magic).empty() && h.wseq > last) {
          return scan_ring("a newer record past the end");
        }
      }
    }
  }
  for (uint64_t i = 0; i < n; ++i) {
    if (in_run[i]) continue;
    if (first[i].record && first[i].h.wseq > start.prev_wseq) return scan_ring("a newer chunk outside the run");
    if (i == after && first[i].damaged) return scan_ring("torn start of the next chunk");
  }

  r.report.newest_wseq = last;
  r.report.released_wseq = released;
  r.head = end_chunk;
  r.start = LiveStart{end_chunk, end_offset, last, released};
  bool start_found = false;
  for (Walked& w : walked) {
    if (w.h.wseq <= released) continue;
    if (!start_found) {
      r.start = LiveStart{w.at.chunk, w.at.offset, w.h.wseq - 1, released};
      start_found = true;
    }
    if (w.h.kind == kKindMarker) continue;  // its data is not here: nothing to replay
    r.report.records.push_back(replayed(w.h, std::move(w.payload)));
    r.record_at.push_back(w.at);
  }
  return std::optional<Recovered>(std::move(r));
}

// Recovers the journal: from the start file when it checks, else by reading
// and checking every chunk (see "Recovery" in journal.h), then the live
// records' payloads.
Result<Recovered> recover(ChunkReader& rd, const Meta& meta) {
  auto logger = log::get("journal");
  if (const std::optional<LiveStart> start = read_start(rd.dir, meta.journal_id)) {
    std::string why_not;
    auto fast = recover_from_start(rd, meta, *start, &why_not);
    if (!fast.ok()) return fast.status();
    if (*fast) {
      Recovered rec = std::move(**fast);
      rec.report.previous_writer_id = meta.writer_id;
      return rec;
    }
    logger->info("journal reads its whole ring: its start does not settle recovery dir={} why={}",
                 log::quote(rd.dir), log::quote(why_not));
  } else {
    logger->info("journal reads its whole ring: no start file of this journal dir={}", log::quote(rd.dir));
  }
  const std::string& dir = rd.dir;
  std::vector<ChunkScan> scans;
  std::vector<std::byte> buf(meta.chunk_bytes);
  for (uint64_t i = 0; i < rd.fds.size(); ++i) {
    PBD_RETURN_IF_ERROR(rd.read(i, 0, buf));
    scans.push_back(scan_chunk(buf, meta.journal_id));
  }
  Recovered rec;
  rec.report.read_whole_ring = true;
  PBD_RETURN_IF_ERROR(analyse(dir, std::move(scans), &rec));
  const uint64_t released = rec.report.released_wseq;
  rec.start = LiveStart{0, 0, 0, released};
  if (!rec.run.empty()) {
    const ChunkScan& hs = rec.scans[rec.head];
    rec.start = LiveStart{rec.head, hs.end_offset, hs.last(), released};
  }
  bool start_found = false;
  for (uint64_t c : rec.run) {
    const ChunkScan& s = rec.scans[c];
    rec.chunks.push_back(RecoveredChunk{c, s.first(), s.last(), s.end_offset});
    for (const Found& f : s.chain) {
      if (f.h.wseq <= released) continue;
      if (!start_found) {
        rec.start = LiveStart{c, f.offset, f.h.wseq - 1, released};
        start_found = true;
      }
      if (f.h.kind == kKindMarker) continue;  // its data is not here: nothing to replay
      std::vector<std::byte> data(f.h.payload_bytes);
      PBD_RETURN_IF_ERROR(rd.read(c, f.offset + kHeaderBytes, data));
      if (crc32c(data) != f.h.payload_crc) {
        return Status::Corruption("journal record at " + dir + "/" + chunk_name(c) + " offset " +
                                  std::to_string(f.offset) + " changed while being recovered");
      }
      rec.report.records.push_back(replayed(f.h, std::move(data)));
      rec.record_at.push_back(RecordAt{c, f.offset});
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
    ChunkReader reader{dir, fds};
    auto recovered = recover(reader, meta);
    if (!recovered.ok()) return recovered.status();
    rec = std::move(recovered).value();
    rec.report.chunk_bytes_read = reader.bytes;
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
        rec.chunks.clear();
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
    rec.start = LiveStart{0, 0, rec.report.newest_wseq, rec.report.released_wseq};
  }
  // The start file, for the next Open: where the live records begin now.
  const std::string start_path = dir + "/start";
  UniqueFd start_fd(::open(start_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!start_fd) return Status::IOError(errno_text("open " + start_path));
  PBD_RETURN_IF_ERROR(write_start(start_fd.get(), meta.journal_id, rec.start).With("write " + start_path));
  OpenedFiles out;
  out.dir_fd = std::move(*dir_fd);
  out.chunk_fds = std::move(fds);
  out.meta = std::move(meta);
  out.report = std::move(rec.report);
  out.unwritten = std::move(unwritten);
  out.head = rec.head;
  out.run = std::move(rec.chunks);
  out.record_at = std::move(rec.record_at);
  out.start_fd = std::move(start_fd);
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
