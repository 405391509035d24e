// Reading the journal's ring back at Open (journal_recovery.h): the ring
// scan (scan_chunk, analyse) and recovery from the start file, each ending in
// the live records Open replays.
#include "src/engine/journal_recovery.h"

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "src/log/log.h"
#include "src/util/crc32c.h"

namespace portalbd::journal_format {

namespace {

constexpr uint64_t kAlign = Journal::kAlign;
constexpr uint64_t kHeaderBytes = Journal::kHeaderBytes;

struct Found {
  uint64_t offset = 0;
  Header h;
};

// One chunk as read: the chain of J1 from offset 0 and what ends it.
struct ChunkScan {
  std::vector<Found> chain;       // records, consecutive wseqs
  std::optional<Found> pad;       // the pad ending the chain
  uint64_t end_offset = 0;        // where the chain's records end
  bool broken = false;            // ended on a damaged or out-of-sequence record
  bool broken_had_magic = false;  // ... that at least started like a record
  std::string broken_reason;
  std::vector<Found> orphans;  // whole records and pads past the end
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
        s.broken_reason =
            "record out of sequence (wseq " + std::to_string(h.wseq) + " after " + std::to_string(s.last()) + ")";
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

// The ring scan's verdict on `scans` (one per chunk, in ring order): the
// newest record, the release watermark, the linked run ending at the head,
// and a torn tail; damage that could hide a live record is kCorruption.
Status analyse(const std::string& dir, const std::vector<ChunkScan>& scans, Recovered* out) {
  const uint64_t n = scans.size();
  auto where = [&](uint64_t c, uint64_t off) { return dir + "/" + chunk_name(c) + " offset " + std::to_string(off); };
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
                        " expected) is damaged (" + (s.broken ? s.broken_reason : std::string("unreadable")) +
                        ") but a newer whole record follows it (wseq " + std::to_string(o.h.wseq) + " at " +
                        where(c, o.offset) + ")";
      if (o.h.synced_wseq >= expected) {
        msg += "; wseq " + std::to_string(expected) + " had been synced before that record was written";
      } else {
        msg +=
            "; no later record says the damaged one was synced, so this may also be a power loss that kept a "
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
                          (s.chain.empty() ? " with no record" : " after wseq " + std::to_string(s.last()));
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
  return Status::OK();
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
    bool parsed = false;   // a well-formed header of this journal (a record or a pad)
    bool record = false;   // a well-formed record header (not a pad)
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

}  // namespace

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
    logger->info("journal reads its whole ring: its start does not settle recovery dir={} why={}", log::quote(rd.dir),
                 log::quote(why_not));
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
  PBD_RETURN_IF_ERROR(analyse(dir, scans, &rec));
  const uint64_t released = rec.report.released_wseq;
  rec.start = LiveStart{0, 0, 0, released};
  if (!rec.run.empty()) {
    const ChunkScan& hs = scans[rec.head];
    rec.start = LiveStart{rec.head, hs.end_offset, hs.last(), released};
  }
  bool start_found = false;
  for (uint64_t c : rec.run) {
    const ChunkScan& s = scans[c];
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

}  // namespace portalbd::journal_format
