#include "src/format/segment.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

using namespace portalbd;

namespace {
std::vector<std::byte> pattern_blocks(uint64_t nblocks, uint8_t seed, bool compressible) {
  std::vector<std::byte> v(nblocks * kBlockSize);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::byte(compressible ? static_cast<uint8_t>(seed + i / 512) : rng());
  return v;
}
// tests/data of the source tree: tests run from the top (run_all.sh) or from
// anywhere given PORTALBD_TEST_DATA.
std::vector<std::byte> test_data(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path path = fs::path("tests/data") / name;
  if (const char* env = std::getenv("PORTALBD_TEST_DATA")) path = fs::path(env) / name;
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing test data " << path);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(raw.size());
  std::memcpy(out.data(), raw.data(), raw.size());
  return out;
}
}  // namespace

// The test objects of formats 2 and 3 hold the same writes: 20 blocks of
// data at block 100 (two entries: frames of 16 and 4 blocks; byte i of the
// data is i / 4096 + i % 7), a hole and a zero run.
void check_twenty_blocks_at_100(const std::vector<std::byte>& obj, const SegmentFooter& parsed) {
  REQUIRE(parsed.entries.size() == 4);
  CHECK(parsed.data_bytes() == 20 * kBlockSize);
  std::vector<std::byte> frame;
  for (const auto& ref : parsed.frames) {
    CHECK(decode_frame(ref, std::span<const std::byte>(obj).subspan(ref.offset, ref.stored_len), &frame).ok());
  }
  REQUIRE(frame.size() == 4 * kBlockSize);  // the last frame: blocks 16-19
  CHECK(static_cast<uint8_t>(frame[3 * 4096 + 5]) == 19 + (19 * 4096 + 5) % 7);
}

TEST_SUITE("engine.segment") {
  TEST_CASE("round trip: entries, frames and data survive encode/parse/decode") {
    for (Codec codec : {Codec::kLz4, Codec::kZstd, Codec::kNone}) {
      SegmentBuilder b(7, 3, codec, 1234, 5);
      auto a = pattern_blocks(20, 1, true);  // spans two frames
      auto c = pattern_blocks(3, 2, false);  // incompressible: stored raw
      b.add_data(100, a);
      b.add_empty(500, 1000000, ExtentState::kHole);
      b.add_data(9, c);
      b.add_empty(40, 2, ExtentState::kZero);
      auto obj = b.finish();

      auto parsed = parse_segment_object(obj);
      REQUIRE(parsed.ok());
      CHECK(parsed->seq == 7);
      CHECK(parsed->layer == 3);
      CHECK(parsed->created_unix_ms == 1234);
      CHECK(parsed->after_seq == 5);
      REQUIRE(parsed->entries.size() == 5);  // 20 blocks split 16+4, then hole, 3 blocks, zero
      CHECK(parsed->data_bytes() == 23 * kBlockSize);

      // Reassemble every data entry from its frame and compare.
      std::vector<std::byte> frame;
      uint64_t checked = 0;
      for (const auto& e : parsed->entries) {
        if (e.state != ExtentState::kData) continue;
        const FrameRef& ref = parsed->frames[e.frame];
        REQUIRE(decode_frame(ref, std::span<const std::byte>(obj).subspan(ref.offset, ref.stored_len), &frame).ok());
        const auto& src = e.lba >= 100 ? a : c;
        uint64_t base = e.lba >= 100 ? 100 : 9;
        for (uint64_t i = 0; i < e.nblocks * kBlockSize; ++i) {
          REQUIRE(frame[e.block_in_frame * kBlockSize + i] == src[(e.lba - base) * kBlockSize + i]);
        }
        checked += e.nblocks;
      }
      CHECK(checked == 23);
    }
  }

  TEST_CASE("version 1 segments (no after_seq) are still read") {
    // Written by portalbd before format version 2 (an ext4 test's segment 0x5f).
    const auto obj = test_data("segment-v1.seg");
    auto parsed = parse_segment_object(obj);
    REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
    CHECK(parsed->seq == 0x5f);
    CHECK(parsed->layer == 4);
    CHECK(parsed->after_seq == 0);
    CHECK(parsed->frames.size() == 3);
    CHECK(parsed->entries.size() == 33);
    std::vector<std::byte> frame;
    for (const auto& ref : parsed->frames) {
      CHECK(decode_frame(ref, std::span<const std::byte>(obj).subspan(ref.offset, ref.stored_len), &frame).ok());
    }
  }

  TEST_CASE("version 2 segments (after_seq, no prev_seq) are still read") {
    // Written by the format 2 encoder (tests/data/segment-v2.seg): seq 0x2a,
    // layer 3, after_seq 0x29, 20 blocks of data at 100, a hole, a zero run.
    const auto obj = test_data("segment-v2.seg");
    auto parsed = parse_segment_object(obj);
    REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
    CHECK(parsed->version == 2);
    CHECK(parsed->seq == 0x2a);
    CHECK(parsed->layer == 3);
    CHECK(parsed->after_seq == 0x29);
    CHECK(parsed->prev_seq == 0);  // format 2 does not say
    check_twenty_blocks_at_100(obj, *parsed);
  }

  TEST_CASE("version 3 segments (prev_seq, no max_wseq or writer) are still read") {
    // Written by the format 3 encoder (tests/data/segment-v3.seg): seq 0x2b,
    // layer 3, prev_seq 0x2a, 20 blocks of data at 100, a hole, a zero run.
    const auto obj = test_data("segment-v3.seg");
    auto parsed = parse_segment_object(obj);
    REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
    CHECK(parsed->version == 3);
    CHECK(parsed->seq == 0x2b);
    CHECK(parsed->prev_seq == 0x2a);
    CHECK(parsed->after_seq == 0);
    CHECK(parsed->max_wseq == 0);  // format 3 does not say
    CHECK(parsed->writer == 0);
    check_twenty_blocks_at_100(obj, *parsed);
  }

  TEST_CASE("version 4 footers carry the newest write sequence number and the writer") {
    SegmentBuilder b(12, 2, Codec::kLz4, 0, /*after_seq=*/0, /*prev_seq=*/9);
    b.set_writes(/*max_wseq=*/12345, /*writer=*/0xfeedfacecafebeefull);
    b.add_data(0, pattern_blocks(1, 3, false));
    auto a = parse_segment_object(b.finish());
    REQUIRE_MESSAGE(a.ok(), a.status().ToString());
    CHECK(a->version == 4);
    CHECK(a->max_wseq == 12345);
    CHECK(a->writer == 0xfeedfacecafebeefull);
    CHECK(a->prev_seq == 9);
  }

  TEST_CASE("version 3 footers name their predecessor, committed or not") {
    SegmentBuilder committed(12, 2, Codec::kNone, 0, /*after_seq=*/0, /*prev_seq=*/9);
    committed.add_data(0, pattern_blocks(1, 3, false));
    auto a = parse_segment_object(committed.finish());
    REQUIRE(a.ok());
    CHECK(a->version == kSegmentFormatVersion);
    CHECK(a->prev_seq == 9);
    CHECK(a->after_seq == 0);

    SegmentBuilder pending(12, 2, Codec::kNone, 0, /*after_seq=*/9);
    pending.add_data(0, pattern_blocks(1, 3, false));
    auto b = parse_segment_object(pending.finish());
    REQUIRE(b.ok());
    CHECK(b->prev_seq == 9);  // an uncommitted predecessor is the predecessor
    CHECK(b->after_seq == 9);

    for (auto pair : {std::pair<uint64_t, uint64_t>{0, 12}, {0, 13}, {8, 9}}) {
      const uint64_t after = pair.first, prev = pair.second;  // named: CHECK_MESSAGE's lambda captures them
      SegmentBuilder bad(12, 2, Codec::kNone, 0, after, prev);
      bad.add_data(0, pattern_blocks(1, 3, false));
      auto parsed = parse_segment_object(bad.finish());
      CHECK_MESSAGE(parsed.status().is(Status::Code::kCorruption), "after " << after << " prev " << prev);
    }
  }

  TEST_CASE("a footer that names itself or a later segment to follow is corruption") {
    for (uint64_t after : {9, 10}) {
      SegmentBuilder b(9, 1, Codec::kNone, 0, after);
      b.add_data(0, pattern_blocks(1, 3, false));
      auto parsed = parse_segment_object(b.finish());
      REQUIRE_FALSE(parsed.ok());
      CHECK(parsed.status().is(Status::Code::kCorruption));
    }
  }

  TEST_CASE("a frame is kept compressed only when that saves at least an eighth") {
    constexpr size_t kRawFrame = size_t{kFrameBlocks} * kBlockSize;
    // 64 KiB whose first `random` bytes are noise and the rest one repeated
    // byte: compression saves about (65536 - random) bytes.
    auto frame_with_noise = [](size_t random) {
      std::vector<std::byte> v(kRawFrame, std::byte{0x5A});
      std::mt19937 rng(42);
      for (size_t i = 0; i < random; ++i) v[i] = std::byte(static_cast<uint8_t>(rng()));
      return v;
    };
    for (Codec codec : {Codec::kLz4, Codec::kZstd}) {
      std::vector<std::byte> out;
      CHECK(compress_frame(codec, frame_with_noise(kRawFrame - kRawFrame / 20), &out) == Codec::kNone);  // saves ~5%
      CHECK(out.size() == kRawFrame);
      out.clear();
      CHECK(compress_frame(codec, frame_with_noise(kRawFrame / 2), &out) == codec);  // saves ~50%
      CHECK(out.size() <= kRawFrame - kRawFrame / kMinSavingsDivisor);
      out.clear();
      CHECK(compress_frame(codec, frame_with_noise(kRawFrame), &out) == Codec::kNone);  // saves nothing
    }
  }

  TEST_CASE("after a frame that did not compress, a sample decides whether the next one is tried") {
    constexpr size_t kRawFrame = size_t{kFrameBlocks} * kBlockSize;
    const auto noise = pattern_blocks(kFrameBlocks, 7, false);
    const auto text = pattern_blocks(kFrameBlocks, 8, true);
    // Noise in the sampled blocks (the first and the middle 4 KiB), one
    // repeated byte elsewhere: worth compressing whole, but the sample says no.
    auto sampled_noise = std::vector<std::byte>(kRawFrame, std::byte{0x5A});
    std::copy_n(noise.begin(), kBlockSize, sampled_noise.begin());
    std::copy_n(noise.begin(), kBlockSize, sampled_noise.begin() + kRawFrame / 2);

    for (Codec codec : {Codec::kLz4, Codec::kZstd}) {
      CAPTURE(codec_name(codec));
      std::vector<std::byte> out;
      CHECK(compress_frame(codec, sampled_noise, &out) == codec);  // tried whole: compresses
      out.clear();
      CHECK(compress_frame(codec, sampled_noise, &out, /*probe=*/true) == Codec::kNone);  // the sample said no
      CHECK(out == sampled_noise);
      out.clear();
      CHECK(compress_frame(codec, text, &out, /*probe=*/true) == codec);  // the sample said yes

      // A builder probes only after a raw frame, and every frame decodes.
      SegmentBuilder b(1, 1, codec, 0);
      b.add_data(0, sampled_noise);   // frame 0: first of the segment, tried whole
      b.add_data(16, noise);          // frame 1: tried whole, stays raw
      b.add_data(32, sampled_noise);  // frame 2: after a raw frame, the sample says no
      b.add_data(48, text);           // frame 3: the sample says yes
      b.add_data(64, sampled_noise);  // frame 4: after a compressed frame, tried whole
      auto obj = b.finish();
      auto parsed = parse_segment_object(obj);
      REQUIRE(parsed.ok());
      REQUIRE(parsed->frames.size() == 5);
      const Codec expected[] = {codec, Codec::kNone, Codec::kNone, codec, codec};
      const std::vector<std::byte>* data[] = {&sampled_noise, &noise, &sampled_noise, &text, &sampled_noise};
      for (size_t i = 0; i < 5; ++i) {
        CAPTURE(i);
        const FrameRef& ref = parsed->frames[i];
        CHECK(ref.codec == expected[i]);
        std::vector<std::byte> back;
        REQUIRE(decode_frame(ref, std::span<const std::byte>(obj).subspan(ref.offset, ref.stored_len), &back).ok());
        CHECK(back == *data[i]);
      }
    }
  }

  TEST_CASE("deep in a run of raw frames only every kProbeEveryRawFrames-th frame is probed") {
    const auto noise = pattern_blocks(kFrameBlocks, 7, false);
    const auto text = pattern_blocks(kFrameBlocks, 8, true);
    for (Codec codec : {Codec::kLz4, Codec::kZstd}) {
      CAPTURE(codec_name(codec));
      // Frames 0-9 noise, 10-19 text. Frame 0 is tried whole, 1-8 probed
      // (raw runs 1-8); from the run's ninth raw frame on only every eighth
      // is probed: 9-15 are stored untried (text among them), 16 is probed
      // and compresses, and 17 on, after a compressed frame, are tried whole.
      SegmentBuilder b(1, 1, codec, 0);
      // One 20-frame write, so whole frames are encoded from the caller's span.
      std::vector<std::byte> all;
      for (int i = 0; i < 20; ++i)
        all.insert(all.end(), (i < 10 ? noise : text).begin(), (i < 10 ? noise : text).end());
      b.add_data(0, all);
      auto obj = b.finish();
      auto parsed = parse_segment_object(obj);
      REQUIRE(parsed.ok());
      REQUIRE(parsed->frames.size() == 20);
      for (size_t i = 0; i < 20; ++i) {
        CAPTURE(i);
        const FrameRef& ref = parsed->frames[i];
        CHECK(ref.codec == (i >= 16 ? codec : Codec::kNone));
        std::vector<std::byte> back;
        REQUIRE(decode_frame(ref, std::span<const std::byte>(obj).subspan(ref.offset, ref.stored_len), &back).ok());
        CHECK(back == (i < 10 ? noise : text));
      }
    }
  }

  TEST_CASE("whole frames encoded from the caller's span and from the open frame give the same object") {
    // Writes that start mid-frame go through the open frame; writes of whole
    // frames are encoded where they lie. Both lay out blocks the same way.
    const auto data = pattern_blocks(3 * kFrameBlocks + 5, 11, true);
    SegmentBuilder whole(1, 1, Codec::kLz4, 0);
    whole.add_data(0, data);
    SegmentBuilder pieces(1, 1, Codec::kLz4, 0);
    for (size_t b = 0; b < data.size() / kBlockSize; ++b) {
      pieces.add_data(b, std::span<const std::byte>(data).subspan(b * kBlockSize, kBlockSize));
    }
    auto a = whole.finish();
    auto parsed_a = parse_segment_object(a);
    auto c = pieces.finish();
    auto parsed_c = parse_segment_object(c);
    REQUIRE((parsed_a.ok() && parsed_c.ok()));
    REQUIRE(parsed_a->frames.size() == 4);
    REQUIRE(parsed_c->frames.size() == 4);
    CHECK(std::equal(
        a.begin(),
        a.begin() + static_cast<ptrdiff_t>(parsed_a->frames.back().offset + parsed_a->frames.back().stored_len),
        c.begin()));
  }

  TEST_CASE("corruption is detected, never returned as data") {
    SegmentBuilder b(1, 1, Codec::kLz4, 0);
    b.add_data(0, pattern_blocks(4, 9, true));
    auto obj = b.finish();
    auto parsed = parse_segment_object(obj);
    REQUIRE(parsed.ok());
    const FrameRef ref = parsed->frames[0];
    auto bad = obj;
    bad[ref.offset + 1] ^= std::byte{0x40};
    std::vector<std::byte> out;
    CHECK(decode_frame(ref, std::span<const std::byte>(bad).subspan(ref.offset, ref.stored_len), &out)
              .is(Status::Code::kCorruption));
    // Any flipped byte in footer or trailer fails the parse.
    for (size_t pos = ref.stored_len; pos < obj.size(); pos += 7) {
      auto broken = obj;
      broken[pos] ^= std::byte{0x01};
      CHECK_FALSE(parse_segment_object(broken).ok());
    }
    CHECK_FALSE(parse_segment_object(std::span<const std::byte>(obj).subspan(0, obj.size() - 1)).ok());
  }

  TEST_CASE("segment keys sort by sequence and parse back") {
    CHECK(segment_key(1) == "segments/0000000000000001.seg");
    CHECK(segment_key(255) < segment_key(4096));
    uint64_t seq = 0;
    CHECK(parse_segment_key(segment_key(0xabcdef), &seq));
    CHECK(seq == 0xabcdef);
    CHECK_FALSE(parse_segment_key("segments/xyz.seg", &seq));
    CHECK_FALSE(parse_segment_key("segments/.0000000000000001.seg.tmp", &seq));
  }
}
