// The journal's files (journal.h draws the format and J1-J3): encoding and
// checking record headers, the meta and start files, laying out a new ring of
// zero-filled chunks, Open's file work around recovery (journal_recovery.cc
// reads the ring back), and Discard. The writer that appends to the ring is
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

#include "src/engine/journal_recovery.h"
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
  // Blocks past 2^64 bytes cannot be addressed; checked without overflow, so
  // a huge nblocks cannot wrap into a plausible payload size.
  constexpr uint64_t kMaxBlocks = UINT64_MAX / kBlockBytes;
  if (h->lba > kMaxBlocks || h->nblocks > kMaxBlocks - h->lba) return "record beyond any volume's end";
  if (h->kind == kKindMarker) {
    if (h->wseq == 0 || h->nblocks == 0 || h->payload_bytes != 0) return "malformed marker";
    return "";
  }
  const bool data = h->state == static_cast<uint8_t>(ExtentState::kData);
  if (h->kind != kKindWrite || h->state > static_cast<uint8_t>(ExtentState::kHole) || h->wseq == 0 || h->nblocks == 0 ||
      (data && h->nblocks != h->payload_bytes / kBlockBytes) || (data && h->payload_bytes % kBlockBytes != 0) ||
      (!data && h->payload_bytes != 0)) {
    return "malformed record header";
  }
  if (h->payload_bytes > avail - kHeaderBytes) return "payload runs past the end of the chunk";
  return "";
}

std::string check_payload(const Header& h, std::span<const std::byte> payload) {
  return crc32c(payload) == h.payload_crc ? "" : "payload checksum mismatch";
}

std::string parse_record(const std::byte* p, uint64_t avail, uint64_t journal_id, Header* h, bool* has_magic) {
  std::string why = parse_header(p, avail, journal_id, h, has_magic);
  if (!why.empty()) return why;
  return check_payload(*h, std::span<const std::byte>(p + kHeaderBytes, h->payload_bytes));
}

bool looks_like_ours(const std::byte* p, uint64_t journal_id) {
  return std::memcmp(p, kMagic, sizeof kMagic) == 0 || get_u64(p + 16) == journal_id;
}

// ---- Files -----------------------------------------------------------------

namespace {

std::string encode_meta(const Meta& m) {
  char id[24];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(m.journal_id));
  std::string body = "portalbd-journal " + std::to_string(m.version) + "\nvolume_uuid " + m.volume_uuid +
                     "\nwriter_id " + m.writer_id + "\njournal_id " + id + "\nchunk_bytes " +
                     std::to_string(m.chunk_bytes) + "\nchunk_count " + std::to_string(m.chunk_count) + "\n";
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x",
                crc32c(std::span(reinterpret_cast<const std::byte*>(body.data()), body.size())));
  return body + "crc32c " + crc + "\n";
}

Result<Meta> decode_meta(const std::string& text, const std::string& path) {
  auto bad = [&](const std::string& why) { return Status::Corruption("journal meta " + path + ": " + why); };
  const size_t crc_at = text.rfind("crc32c ");
  if (crc_at == std::string::npos || (crc_at > 0 && text[crc_at - 1] != '\n')) return bad("no checksum line");
  const std::string body = text.substr(0, crc_at);
  char want[16];
  std::snprintf(want, sizeof want, "%08x",
                crc32c(std::span(reinterpret_cast<const std::byte*>(body.data()), body.size())));
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

std::optional<LiveStart> read_start(const std::string& dir, uint64_t journal_id) {
  UniqueFd fd(::open((dir + "/start").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::vector<std::byte> b(kStartBytes);
  if (!pread_all(fd.get(), b, 0).ok()) return std::nullopt;
  return decode_start(b, journal_id);
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
      logger->warn(
          "journal of another volume, with nothing live, laid out anew for this one dir={} was_volume={} "
          "volume={}",
          log::quote(dir), meta.volume_uuid, opts.volume_uuid);
      fds.clear();
      PBD_RETURN_IF_ERROR(remove_journal_files(dir, dir_fd->get()));
      rec = Recovered{};
      rec.report.created = true;
      create = true;
    } else if (meta.chunk_bytes != opts.chunk_bytes || meta.chunk_count != want_chunks) {
      if (rec.report.records.empty()) {
        logger->info(
            "journal laid out anew for new geometry dir={} chunk_bytes={} chunks={} was_chunk_bytes={} "
            "was_chunks={}",
            log::quote(dir), opts.chunk_bytes, want_chunks, meta.chunk_bytes, meta.chunk_count);
        fds.clear();
        PBD_RETURN_IF_ERROR(remove_journal_files(dir, dir_fd->get()));
        rec.run.clear();
        rec.chunks.clear();
        create = true;
      } else {
        logger->warn(
            "journal keeps its geometry while it holds live records dir={} chunk_bytes={} chunks={} "
            "asked_chunk_bytes={} asked_chunks={}",
            log::quote(dir), meta.chunk_bytes, meta.chunk_count, opts.chunk_bytes, want_chunks);
      }
    }
  } else {
    rec.report.created = true;
    const auto leftovers = our_files(dir);
    if (!leftovers.empty()) {
      logger->warn("journal dir has chunk files but no meta, starting a new journal dir={} files={}", log::quote(dir),
                   leftovers.size());
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
