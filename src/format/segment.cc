#include "src/format/segment.h"

#include <cassert>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "src/util/crc32c.h"
#include "src/util/endian.h"
#include "src/util/huge_pages.h"

namespace portalbd {
namespace {

constexpr char kFooterMagic[8] = {'P', 'B', 'D', 'S', 'E', 'G', 'F', '1'};
constexpr char kTrailerMagic[8] = {'P', 'B', 'D', 'S', 'E', 'G', 'T', '1'};
constexpr size_t kFooterHeaderBytesV1 = 8 + 4 + 4 + 8 + 8 + 8 + 4 + 4;
constexpr size_t kFooterHeaderBytesV2 = kFooterHeaderBytesV1 + 8;  // + after_seq
constexpr size_t kFooterHeaderBytesV3 = kFooterHeaderBytesV2 + 8;  // + prev_seq
constexpr size_t kFooterHeaderBytes = kFooterHeaderBytesV3 + 16;   // + max_wseq, writer
constexpr size_t kFrameRecordBytes = 24;
constexpr size_t kEntryRecordBytes = 32;

void put_magic(std::vector<std::byte>* out, const char (&magic)[8]) {
  for (char c : magic) out->push_back(static_cast<std::byte>(c));
}

bool has_magic(const std::byte* p, const char (&magic)[8]) { return std::memcmp(p, magic, 8) == 0; }

}  // namespace

std::string segment_key(uint64_t seq) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "segments/%016llx.seg", static_cast<unsigned long long>(seq));
  return buf;
}

namespace {
// "<prefix><16 lowercase hex digits><suffix>" -> the number; false otherwise.
bool parse_hex_key(const std::string& key, std::string_view prefix, std::string_view suffix, uint64_t* out) {
  if (key.size() != prefix.size() + 16 + suffix.size() || key.compare(0, prefix.size(), prefix) != 0 ||
      key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  uint64_t v = 0;
  for (size_t i = prefix.size(); i < prefix.size() + 16; ++i) {
    char c = key[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}
}  // namespace

bool parse_segment_key(const std::string& key, uint64_t* seq) { return parse_hex_key(key, "segments/", ".seg", seq); }

std::string checkpoint_key(uint64_t seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "checkpoints/%016llx.sqlite.zst", static_cast<unsigned long long>(seq));
  return buf;
}

uint64_t parse_checkpoint_key(const std::string& key) {
  uint64_t seq = 0;
  return parse_hex_key(key, "checkpoints/", ".sqlite.zst", &seq) ? seq : 0;
}

std::string roots_record_key(uint64_t seq) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "roots/%016llx.json", static_cast<unsigned long long>(seq));
  return buf;
}

uint64_t parse_roots_record_key(const std::string& key) {
  uint64_t seq = 0;
  return parse_hex_key(key, "roots/", ".json", &seq) ? seq : 0;
}

uint64_t SegmentFooter::data_bytes() const {
  uint64_t n = 0;
  for (const auto& e : entries) {
    if (e.state == ExtentState::kData) n += e.nblocks * kBlockSize;
  }
  return n;
}

SegmentBuilder::SegmentBuilder(uint64_t seq, uint64_t layer, Codec codec, int64_t created_unix_ms, uint64_t after_seq,
                               uint64_t prev_seq)
    : codec_(codec) {
  footer_.seq = seq;
  footer_.layer = layer;
  footer_.created_unix_ms = created_unix_ms;
  footer_.after_seq = after_seq;
  footer_.prev_seq = prev_seq != 0 ? prev_seq : after_seq;  // an uncommitted predecessor is the predecessor
  pending_.reserve(kFrameBlocks * kBlockSize);
}

void SegmentBuilder::reserve(uint64_t raw_bytes) {
  // Frames are never stored larger than raw; the footer takes 32 bytes per
  // frame and per entry, at worst one entry per block (under 1/64 of raw).
  object_.reserve(static_cast<size_t>(raw_bytes + raw_bytes / 64 + 4096));
  advise_huge_pages(object_.data(), object_.capacity());
}

void SegmentBuilder::add_data(uint64_t lba, std::span<const std::byte> data) {
  assert(!data.empty() && data.size() % kBlockSize == 0);
  uint64_t nblocks = data.size() / kBlockSize;
  uint64_t done = 0;
  while (done < nblocks) {
    uint32_t used = static_cast<uint32_t>(pending_.size() / kBlockSize);
    uint64_t take = std::min<uint64_t>(kFrameBlocks - used, nblocks - done);
    footer_.entries.push_back(
        {lba + done, take, static_cast<uint32_t>(footer_.frames.size()), used, ExtentState::kData});
    auto part = data.subspan(done * kBlockSize, take * kBlockSize);
    done += take;
    if (used == 0 && take == kFrameBlocks) {
      seal_frame(part);  // a whole frame: encoded from where it lies, not copied into pending_ first
      continue;
    }
    pending_.insert(pending_.end(), part.begin(), part.end());
    if (pending_.size() == kFrameBlocks * kBlockSize) {
      seal_frame(pending_);
      pending_.clear();
    }
  }
}

void SegmentBuilder::add_empty(uint64_t lba, uint64_t nblocks, ExtentState state) {
  assert(nblocks > 0 && state != ExtentState::kData);
  footer_.entries.push_back({lba, nblocks, kNoFrame, 0, state});
}

void SegmentBuilder::seal_frame(std::span<const std::byte> raw) {
  FrameRef ref;
  ref.offset = object_.size();
  ref.raw_len = static_cast<uint32_t>(raw.size());
  // Deep in a run of raw frames most are stored raw untried; every
  // kProbeEveryRawFrames-th is probed, so data that compresses again is
  // found soon.
  const bool untried = raw_run_ > kProbeEveryRawFrames && raw_run_ % kProbeEveryRawFrames != 0;
  ref.codec = compress_frame(untried ? Codec::kNone : codec_, raw, &object_, /*probe=*/raw_run_ > 0);
  raw_run_ = ref.codec == Codec::kNone ? raw_run_ + 1 : 0;
  ref.stored_len = static_cast<uint32_t>(object_.size() - ref.offset);
  ref.crc = crc32c(std::span<const std::byte>(object_).subspan(ref.offset, ref.stored_len));
  footer_.frames.push_back(ref);
}

std::vector<std::byte> SegmentBuilder::finish() {
  if (!pending_.empty()) seal_frame(pending_);
  pending_.clear();
  const uint64_t footer_offset = object_.size();
  std::vector<std::byte>& o = object_;
  put_magic(&o, kFooterMagic);
  put_u32(&o, kSegmentFormatVersion);
  put_u32(&o, 0);  // flags
  put_u64(&o, footer_.seq);
  put_u64(&o, footer_.layer);
  put_u64(&o, static_cast<uint64_t>(footer_.created_unix_ms));
  put_u64(&o, footer_.after_seq);
  put_u64(&o, footer_.prev_seq);
  put_u64(&o, footer_.max_wseq);
  put_u64(&o, footer_.writer);
  put_u32(&o, static_cast<uint32_t>(footer_.frames.size()));
  put_u32(&o, static_cast<uint32_t>(footer_.entries.size()));
  for (const auto& f : footer_.frames) {
    put_u64(&o, f.offset);
    put_u32(&o, f.stored_len);
    put_u32(&o, f.raw_len);
    put_u32(&o, f.crc);
    put_u8(&o, static_cast<uint8_t>(f.codec));
    put_zeros(&o, 3);
  }
  for (const auto& e : footer_.entries) {
    put_u64(&o, e.lba);
    put_u64(&o, e.nblocks);
    put_u32(&o, e.frame);
    put_u32(&o, e.block_in_frame);
    put_u8(&o, static_cast<uint8_t>(e.state));
    put_zeros(&o, 7);
  }
  const uint32_t footer_len = static_cast<uint32_t>(o.size() - footer_offset);
  const uint32_t footer_crc = crc32c(std::span<const std::byte>(o).subspan(footer_offset, footer_len));
  const size_t trailer_start = o.size();
  put_u64(&o, footer_offset);
  put_u32(&o, footer_len);
  put_u32(&o, footer_crc);
  put_u32(&o, kSegmentFormatVersion);
  put_u32(&o, 0);
  put_u64(&o, crc32c(std::span<const std::byte>(o).subspan(trailer_start, 24)));
  put_magic(&o, kTrailerMagic);
  assert(o.size() - trailer_start == kSegmentTrailerBytes);
  return std::move(object_);
}

Status parse_segment_trailer(std::span<const std::byte> t, uint64_t* footer_offset, uint32_t* footer_len) {
  if (t.size() != kSegmentTrailerBytes || !has_magic(t.data() + 32, kTrailerMagic)) {
    return Status::Corruption("not a segment trailer");
  }
  if (get_u64(t.data() + 24) != crc32c(t.subspan(0, 24)))
    return Status::Corruption("segment trailer checksum mismatch");
  const uint32_t version = get_u32(t.data() + 16);
  if (version < 1 || version > kSegmentFormatVersion) {
    return Status::Corruption("unsupported segment version " + std::to_string(version));
  }
  *footer_offset = get_u64(t.data());
  *footer_len = get_u32(t.data() + 8);
  return Status::OK();
}

Result<SegmentFooter> parse_segment_footer(std::span<const std::byte> f, uint64_t footer_offset) {
  if (f.size() < kFooterHeaderBytesV1 || !has_magic(f.data(), kFooterMagic)) {
    return Status::Corruption("not a segment footer");
  }
  SegmentFooter footer;
  const std::byte* p = f.data() + 8;
  const uint32_t version = get_u32(p);
  if (version < 1 || version > kSegmentFormatVersion) return Status::Corruption("unsupported segment footer version");
  const size_t header_bytes = version == 1   ? kFooterHeaderBytesV1
                              : version == 2 ? kFooterHeaderBytesV2
                              : version == 3 ? kFooterHeaderBytesV3
                                             : kFooterHeaderBytes;
  footer.version = version;
  if (f.size() < header_bytes) return Status::Corruption("segment footer is truncated");
  footer.seq = get_u64(p + 8);
  footer.layer = get_u64(p + 16);
  footer.created_unix_ms = static_cast<int64_t>(get_u64(p + 24));
  p += 32;
  if (version >= 2) {
    footer.after_seq = get_u64(p);
    p += 8;
    if (footer.after_seq >= footer.seq) return Status::Corruption("segment footer names a later segment to follow");
  }
  if (version >= 3) {
    footer.prev_seq = get_u64(p);
    p += 8;
    if (footer.prev_seq >= footer.seq)
      return Status::Corruption("segment footer names a later segment as its predecessor");
    // The predecessor left uncommitted is the one sealed just before.
    if (footer.after_seq != 0 && footer.after_seq != footer.prev_seq) {
      return Status::Corruption("segment footer names two different predecessors");
    }
  }
  if (version >= 4) {
    footer.max_wseq = get_u64(p);
    footer.writer = get_u64(p + 8);
    p += 16;
  }
  const uint64_t nframes = get_u32(p);
  const uint64_t nentries = get_u32(p + 4);
  if (f.size() != header_bytes + nframes * kFrameRecordBytes + nentries * kEntryRecordBytes) {
    return Status::Corruption("segment footer length does not match its counts");
  }
  p = f.data() + header_bytes;
  footer.frames.reserve(nframes);
  for (uint64_t i = 0; i < nframes; ++i, p += kFrameRecordBytes) {
    FrameRef r{get_u64(p), get_u32(p + 8), get_u32(p + 12), get_u32(p + 16), static_cast<Codec>(p[20])};
    // Written so that no sum can wrap: offset <= footer_offset first.
    if (r.offset > footer_offset || r.stored_len > footer_offset - r.offset || r.raw_len == 0 ||
        r.raw_len % kBlockSize != 0 || r.raw_len > kFrameBlocks * kBlockSize || static_cast<uint8_t>(r.codec) > 2) {
      return Status::Corruption("segment frame record " + std::to_string(i) + " is out of bounds");
    }
    footer.frames.push_back(r);
  }
  footer.entries.reserve(nentries);
  for (uint64_t i = 0; i < nentries; ++i, p += kEntryRecordBytes) {
    SegmentEntry e{get_u64(p), get_u64(p + 8), get_u32(p + 16), get_u32(p + 20), static_cast<ExtentState>(p[24])};
    bool ok = e.nblocks > 0 && e.lba + e.nblocks > e.lba && static_cast<uint8_t>(e.state) <= 2;
    if (ok && e.state == ExtentState::kData) {
      ok = e.frame < footer.frames.size() &&
           (e.block_in_frame + e.nblocks) * kBlockSize <= footer.frames[e.frame].raw_len;
    }
    if (!ok) return Status::Corruption("segment entry " + std::to_string(i) + " is malformed");
    footer.entries.push_back(e);
  }
  return footer;
}

Result<SegmentFooter> parse_segment_object(std::span<const std::byte> object) {
  if (object.size() < kSegmentTrailerBytes) return Status::Corruption("segment object too short");
  uint64_t footer_offset = 0;
  uint32_t footer_len = 0;
  PBD_RETURN_IF_ERROR(
      parse_segment_trailer(object.subspan(object.size() - kSegmentTrailerBytes), &footer_offset, &footer_len));
  const uint64_t body = object.size() - kSegmentTrailerBytes;        // frames + footer
  if (footer_offset > body || footer_len != body - footer_offset) {  // no sum that could wrap
    return Status::Corruption("segment footer position does not match the object size");
  }
  auto footer = object.subspan(footer_offset, footer_len);
  const std::byte* t = object.data() + object.size() - kSegmentTrailerBytes;
  if (crc32c(footer) != get_u32(t + 12)) return Status::Corruption("segment footer checksum mismatch");
  return parse_segment_footer(footer, footer_offset);
}

Status verify_frame(const FrameRef& ref, std::span<const std::byte> stored) {
  if (stored.size() != ref.stored_len) return Status::Corruption("frame is truncated");
  if (crc32c(stored) != ref.crc) return Status::Corruption("frame checksum mismatch");
  if (ref.codec == Codec::kNone && stored.size() != ref.raw_len)
    return Status::Corruption("raw frame has the wrong length");
  return Status::OK();
}

Status decode_frame(const FrameRef& ref, std::span<const std::byte> stored, std::span<std::byte> out) {
  if (out.size() != ref.raw_len) return Status::InvalidArgument("decode_frame: output is not raw_len bytes");
  PBD_RETURN_IF_ERROR(verify_frame(ref, stored));
  return decompress_frame(ref.codec, stored, out);
}

Status decode_frame(const FrameRef& ref, std::span<const std::byte> stored, std::vector<std::byte>* out) {
  out->resize(ref.raw_len);
  return decode_frame(ref, stored, std::span<std::byte>(*out));
}

}  // namespace portalbd
