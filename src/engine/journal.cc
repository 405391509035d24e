#include "src/engine/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
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

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMagic[8] = {'P', 'B', 'D', 'J', 'R', 'E', 'C', '1'};
constexpr uint8_t kKindWrite = 1;
constexpr uint8_t kKindPad = 2;
constexpr uint64_t kAlign = Journal::kAlign;
constexpr uint64_t kHeaderBytes = Journal::kHeaderBytes;
constexpr uint64_t kBlockBytes = Journal::kBlockBytes;
constexpr uint64_t kMinChunkBytes = 16 * 1024;
constexpr uint64_t kMaxChunks = 10000;  // chunk-0000 .. chunk-9999
constexpr uint64_t kCrcOffset = 12;

uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string chunk_name(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "chunk-%04llu", static_cast<unsigned long long>(i));
  return buf;
}

// ---- Records ---------------------------------------------------------------

struct Header {
  uint8_t kind = kKindWrite;
  uint8_t state = 0;
  uint64_t journal_id = 0;
  uint64_t wseq = 0;
  uint64_t lba = 0;
  uint64_t nblocks = 0;
  uint64_t synced_wseq = 0;
  uint64_t released_wseq = 0;
  uint32_t payload_bytes = 0;
  uint32_t payload_crc = 0;
};

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

struct Meta {
  uint32_t version = Journal::kFormatVersion;
  std::string volume_uuid;
  std::string writer_id;
  uint64_t journal_id = 0;
  uint64_t chunk_bytes = 0;
  uint64_t chunk_count = 0;
};

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

// meta.tmp, fsync, rename over meta, fsync of the directory.
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

// Creates chunk files full of zeros (see journal.h: nothing to allocate
// later), then meta, the commit point.
Status create_journal(const std::string& dir, int dir_fd, const Meta& m, std::vector<UniqueFd>* fds) {
  fds->clear();
  const std::vector<std::byte> zeros(std::min<uint64_t>(m.chunk_bytes, 1 << 20));
  for (uint64_t i = 0; i < m.chunk_count; ++i) {
    const std::string path = dir + "/" + chunk_name(i);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return Status::IOError(errno_text("create " + path));
    for (uint64_t off = 0; off < m.chunk_bytes; off += zeros.size()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), m.chunk_bytes - off));
      PBD_RETURN_IF_ERROR(pwrite_all(fd.get(), std::span(zeros.data(), n), off).With("write " + path));
    }
    PBD_RETURN_IF_ERROR(fdatasync_fd(fd.get(), path));
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

}  // namespace

// ---- Journal ---------------------------------------------------------------

Journal::Journal(JournalOptions opts, UniqueFd dir_fd, std::vector<UniqueFd> chunk_fds, uint64_t journal_id,
                 bool claim_pending)
    : opts_(std::move(opts)),
      dir_fd_(std::move(dir_fd)),
      chunk_fds_(std::move(chunk_fds)),
      journal_id_(journal_id),
      max_payload_bytes_((opts_.chunk_bytes - kAlign - kHeaderBytes) / kBlockBytes * kBlockBytes),
      claim_pending_(claim_pending),
      chunks_(chunk_fds_.size()),
      dirty_(chunk_fds_.size(), false) {}

Journal::~Journal() = default;

namespace {

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

Result<OpenedJournal> Journal::Open(JournalOptions opts) {
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
  if (*found && (*found)->volume_uuid != opts.volume_uuid) {
    return Status::InvalidArgument("journal " + dir + " belongs to volume " + (*found)->volume_uuid + ", not " +
                                   opts.volume_uuid + ": give this volume its own journal dir, or discard that journal");
  }

  // Recover what is there; a new geometry applies only when nothing is live.
  Meta meta;
  Recovered rec;
  std::vector<UniqueFd> fds;
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
    if (meta.chunk_bytes != opts.chunk_bytes || meta.chunk_count != want_chunks) {
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
    Status st = create_journal(dir, dir_fd->get(), meta, &fds);
    if (!st.ok()) {
      fds.clear();
      (void)remove_journal_files(dir, dir_fd->get());  // leave no half journal taking space
      return st.With("create journal " + dir);
    }
    logger->info("journal created dir={} chunk_bytes={} chunks={}", log::quote(dir), meta.chunk_bytes,
                 meta.chunk_count);
  }
  opts.chunk_bytes = meta.chunk_bytes;
  opts.capacity_bytes = meta.chunk_bytes * meta.chunk_count;

  // The caller may keep writing as the previous writer (it replays that
  // writer's records as its own): then meta stays as it is.
  if (!meta.writer_id.empty() && meta.writer_id != opts.writer_id && opts.adopt_previous_writer &&
      opts.adopt_previous_writer(meta.writer_id)) {
    opts.writer_id = meta.writer_id;
  }
  const bool claim = meta.writer_id != opts.writer_id;
  std::unique_ptr<Journal> j(new Journal(std::move(opts), std::move(*dir_fd), std::move(fds), meta.journal_id, claim));
  const JournalRecovery& report = rec.report;
  {
    MutexLock lock(&j->mu_);
    const uint64_t newest = report.newest_wseq;
    const auto now = Clock::now();
    for (uint64_t c : rec.run) {
      const ChunkScan& s = rec.scans[c];
      j->chunks_[c] = ChunkState{true, s.first(), s.last(), s.end_offset};
    }
    j->head_ = rec.run.empty() ? 0 : rec.head;
    j->chunks_[j->head_].in_use = true;
    j->appended_wseq_ = newest;
    j->synced_wseq_ = newest;
    j->released_wseq_ = report.released_wseq;
    j->next_wseq_ = std::max(newest, report.released_wseq) + 1;
    for (const JournalRecord& r : report.records) j->live_.push_back(LiveRecord{r.wseq, now});
    j->free_released_chunks();
  }
  logger->info("journal opened dir={} live_records={} newest_wseq={} released_wseq={} previous_writer={}",
               log::quote(j->opts_.dir), report.records.size(), report.newest_wseq, report.released_wseq,
               log::quote(report.previous_writer_id));
  OpenedJournal opened;
  opened.journal = std::move(j);
  opened.recovery = std::move(rec.report);
  return opened;
}

Status Journal::Discard(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::OK();
  auto dir_fd = lock_dir(dir);
  if (!dir_fd.ok()) return dir_fd.status();
  PBD_RETURN_IF_ERROR(remove_journal_files(dir, dir_fd->get()));
  log::get("journal")->warn("journal discarded dir={}", log::quote(dir));
  return Status::OK();
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
  return failed_;
}

Status Journal::write_meta_claim() {
  Meta m;
  m.volume_uuid = opts_.volume_uuid;
  m.writer_id = opts_.writer_id;
  m.journal_id = journal_id_;
  m.chunk_bytes = opts_.chunk_bytes;
  m.chunk_count = chunk_fds_.size();
  return write_meta(opts_.dir, dir_fd_.get(), m).With("journal claims its records");
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
  Status st = e != 0 ? Status::IOError(std::string("pwrite: ") + std::strerror(e))
                     : pwrite_all(fd, pad, offset);
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
  chunks_[next] = ChunkState{true, 0, 0, 0};
  head_ = next;
  free_released_chunks();
  return Status::OK();
}

Status Journal::append(uint64_t wseq, uint64_t lba, uint64_t nblocks, ExtentState state,
                       std::span<const std::byte> data, Clock::time_point deadline) {
  const bool is_data = state == ExtentState::kData;
  if (wseq == 0 || nblocks == 0 || (is_data && data.size() != nblocks * kBlockBytes) ||
      (!is_data && !data.empty()) || static_cast<uint8_t>(state) > static_cast<uint8_t>(ExtentState::kHole)) {
    return Status::InvalidArgument("journal append: malformed record (wseq " + std::to_string(wseq) + ", " +
                                   std::to_string(nblocks) + " blocks, " + std::to_string(data.size()) +
                                   " payload bytes)");
  }
  if (data.size() > max_payload_bytes_) {
    return Status::InvalidArgument("journal append: " + std::to_string(data.size()) +
                                   " bytes exceed a record's maximum of " + std::to_string(max_payload_bytes_));
  }
  Header h;
  h.kind = kKindWrite;
  h.state = static_cast<uint8_t>(state);
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
  // release() then moved the sequence past it. Nothing left to journal.
  if (wseq > appended_wseq_ && wseq < next_wseq_ && wseq <= released_wseq_) return Status::OK();
  if (wseq < next_wseq_ || turn_taken_) {
    return Status::InvalidArgument("journal append: wseq " + std::to_string(wseq) +
                                   (turn_taken_ ? " is being appended already" : " was appended already (next is " +
                                                                                     std::to_string(next_wseq_) + ")"));
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
  dirty_[chunk] = true;
  appended_wseq_ = wseq;
  next_wseq_ = wseq + 1;
  live_.push_back(LiveRecord{wseq, Clock::now()});
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
    next_wseq_ = upto + 1;  // the sequence moves on; the next append starts a new chunk (J1)
    turn_cv_.notify_all();
  }
  free_released_chunks();
}

Status Journal::close() {
  MutexLock lock(&mu_);
  if (closed_) return Status::OK();
  while (turn_taken_) turn_cv_.wait(lock);
  closed_ = true;
  turn_cv_.notify_all();
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
  return Status::OK();
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
  s.failed = !failed_.ok();
  return s;
}

}  // namespace portalbd
