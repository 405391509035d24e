// Volume I/O: reads resolve each block through the write buffers and the live
// map; writes land in the active buffer.
#include <algorithm>
#include <cstring>
#include <optional>

#include "src/engine/volume.h"
#include "src/log/log.h"

namespace portalbd {

namespace {

// The blocks that bytes [offset, offset + length) touch, as resolve() takes them.
struct BlockSpan {
  uint64_t first = 0;
  uint64_t count = 0;
};

BlockSpan blocks_of(uint64_t offset, uint64_t length) {
  const uint64_t first = offset / kBlockSize;
  return BlockSpan{first, (offset + length + kBlockSize - 1) / kBlockSize - first};
}

}  // namespace

Status Volume::check_range(uint64_t offset, uint64_t length, bool for_write) const {
  if (for_write && opts_.read_only) return read_only_refusal("write");
  if (length == 0 || offset > size_bytes_ || length > size_bytes_ - offset) {
    std::string what = "range offset=" + std::to_string(offset) + " length=" + std::to_string(length) +
                       " is past the end of the device (" + std::to_string(size_bytes_) + " bytes)";
    return for_write ? Status::NoSpace(what) : Status::OutOfRange(what);
  }
  return Status::OK();
}

Result<std::vector<Piece>> Volume::resolve(const Layer* top, uint64_t lba, uint64_t nblocks) {
  MutexLock lock(&layers_.mu());
  return resolve_locked(top, lba, nblocks);
}

Result<std::vector<Piece>> Volume::resolve_locked(const Layer* top, uint64_t lba, uint64_t nblocks) {
  ExtentMap<BlockSource> view;
  // The flattened base when the chain passes through it, then the layers
  // above it, oldest first: a few maps, however many snapshots are behind.
  std::vector<const Layer*> above;  // newest first
  if (const Layer* base = layers_.read_path_locked(top, &above)) {
    PBD_RETURN_IF_ERROR(
        base->visit(lba, nblocks, [&](uint64_t s, uint64_t n, const BlockSource& src) { view.assign(s, n, src); }));
    resolve_maps_++;
  }
  PBD_RETURN_IF_ERROR(LayerSet::overlay_chain(above, lba, nblocks, &view));
  resolves_++;
  resolve_maps_ += above.size();
  // Buffers not yet committed to a layer of this chain are newer than its
  // maps. Layers in the base have none (flatten_step_locked waits for them).
  pipeline_.overlay_buffers_locked(above, top == nullptr, lba, nblocks, &view);
  std::vector<Piece> out;
  out.reserve(view.size());
  for (const auto& [start, node] : view.entries()) out.emplace_back(start, node.length, node.value);
  return out;
}

namespace {

// [offset, offset+length) of a whole object, cut short at its end (a short
// frame is then reported as truncated by verify_frame).
std::span<const std::byte> stored_span(const std::vector<std::byte>& object, uint64_t offset, uint64_t length) {
  const uint64_t at = std::min<uint64_t>(offset, object.size());
  return std::span<const std::byte>(object).subspan(at, std::min<uint64_t>(length, object.size() - at));
}

}  // namespace

Result<FrameCache::Frame> Volume::decode_and_cache(uint64_t seq, const FrameRef& ref, std::span<const std::byte> stored,
                                                   std::shared_ptr<const void> stored_owner) {
  FrameCache::Frame frame;
  Status st;
  if (ref.codec == Codec::kNone && stored_owner != nullptr) {
    // Stored raw in memory that stays put: verify, and use it where it is.
    st = verify_frame(ref, stored);
    frame = {std::move(stored_owner), stored};
  } else {
    // Not zero-filled first: decoding writes every byte (or fails).
    std::shared_ptr<std::byte[]> buf(new std::byte[ref.raw_len]);
    const std::span<std::byte> bytes(buf.get(), ref.raw_len);
    st = decode_frame(ref, stored, bytes);
    frame = {std::move(buf), bytes};
  }
  if (!st.ok()) {
    const std::string key = segment_key(seq);
    log::get("engine")->error("corrupt frame in segment object={} offset={} length={} error={}", key, ref.offset,
                              ref.stored_len, log::quote(st.message()));
    return Status::Corruption(key + " at offset " + std::to_string(ref.offset) + ": " + st.message());
  }
  cache_.put(seq, ref.offset, frame);
  return frame;
}

Result<FrameCache::Frame> Volume::load_frame(uint64_t seq, const FrameRef& ref) {
  BlockSource src;
  src.state = ExtentState::kData;
  src.seq = seq;
  src.frame = ref;
  FrameBatch batch;
  PBD_RETURN_IF_ERROR(fetch_frames({Piece{0, 1, std::move(src)}}, &batch));
  return batch.begin()->second;
}

Status Volume::fetch_frames(const std::vector<Piece>& pieces, FrameBatch* batch, bool cached_only) {
  std::map<uint64_t, std::vector<FrameRef>> missing;  // seq -> frames the memory cache lacks
  uint64_t hits = 0, misses = 0;
  for (const auto& [lba, nblocks, src] : pieces) {
    if (src.state != ExtentState::kData || src.buffered()) continue;
    const std::pair<uint64_t, uint64_t> id{src.seq, src.frame.offset};
    if (batch->count(id)) continue;
    // A read offered without waiting counts its lookups once it is served
    // (below): one handed on to a worker is counted there, once.
    if (auto hit = cached_only ? cache_.recheck(src.seq, src.frame.offset) : cache_.get(src.seq, src.frame.offset)) {
      (*batch)[id] = std::move(hit);
      ++hits;
      continue;
    }
    ++misses;
    missing[src.seq].push_back(src.frame);
  }
  Status st = fetch_missing(missing, batch, cached_only);
  if (cached_only && st.ok()) cache_.count(hits, misses);
  return st;
}

Status Volume::fetch_missing(const std::map<uint64_t, std::vector<FrameRef>>& missing, FrameBatch* batch,
                             bool cached_only) {
  std::vector<FrameWant> wants;
  for (auto& [seq, frames] : missing) {
    if (auto whole = store_->get_shared(segment_key(seq))) {  // the object is in memory: no GET, no copy
      for (const FrameRef& ref : frames) {
        if (batch->count({seq, ref.offset})) continue;
        auto frame = decode_and_cache(seq, ref, stored_span(*whole, ref.offset, ref.stored_len), whole);
        if (!frame.ok()) return frame.status();
        (*batch)[{seq, ref.offset}] = std::move(*frame);
      }
      continue;
    }
    for (const FrameRef& ref : frames) wants.push_back({seq, ref});
  }
  if (wants.empty()) return Status::OK();
  if (cached_only) return fetcher_->fetch_cached(wants, batch) ? Status::OK() : Status::Unavailable("would wait");
  return fetcher_->fetch(wants, batch);
}

void Volume::read_ahead(const Layer* top, uint64_t offset, uint64_t length) {
  const StreamDetector::Range r = streams_->observe(reinterpret_cast<uintptr_t>(top), offset, length);
  if (r.length == 0 || r.offset >= size_bytes_) return;
  const BlockSpan b = blocks_of(r.offset, std::min(size_bytes_ - r.offset, r.length));
  std::vector<FrameWant> wants;
  auto pieces = resolve(top, b.first, b.count);
  if (!pieces.ok()) return;  // only a hint: the read itself reports the error
  for (const auto& [lba, nblocks, src] : *pieces) {
    if (src.state != ExtentState::kData || src.buffered()) continue;
    // Pieces of one frame are usually neighbours: skip the repeats cheaply.
    if (!wants.empty() && wants.back().seq == src.seq && wants.back().ref.offset == src.frame.offset) continue;
    wants.push_back({src.seq, src.frame});
  }
  if (!wants.empty()) fetcher_->prefetch(wants);
}

// Copies the bytes `piece` holds for [byte_offset, byte_offset + out.size())
// of the device into `out`. `lba_base` is the piece's first block.
Status Volume::read_blocks_into(const Piece& piece, uint64_t lba_base, uint64_t byte_offset, std::span<std::byte> out,
                                const FrameBatch* batch) {
  const BlockSource& src = std::get<2>(piece);
  const uint64_t skip = byte_offset - lba_base * kBlockSize;  // bytes into the piece
  if (src.state != ExtentState::kData) {
    std::memset(out.data(), 0, out.size());
    return Status::OK();
  }
  if (src.buffered()) {
    std::memcpy(out.data(), src.bytes->data() + src.byte_offset + skip, out.size());
    return Status::OK();
  }
  FrameCache::Frame frame;
  if (batch != nullptr) {
    if (auto it = batch->find({src.seq, src.frame.offset}); it != batch->end()) frame = it->second;
  }
  if (!frame) {
    auto loaded = load_frame(src.seq, src.frame);
    if (!loaded.ok()) return loaded.status();
    frame = std::move(*loaded);
  }
  const uint64_t at = src.block_in_frame * uint64_t{kBlockSize} + skip;
  if (at + out.size() > frame.bytes.size()) return Status::Corruption("index entry points past the end of its frame");
  std::memcpy(out.data(), frame.bytes.data() + at, out.size());
  return Status::OK();
}

Status Volume::read(uint64_t offset, std::span<std::byte> out) { return read_view(nullptr, offset, out); }

Status Volume::read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) {
  return read_view(nullptr, offset, out, extents);
}

Status Volume::read_view(const Layer* top, uint64_t offset, std::span<std::byte> out,
                         std::vector<StatusExtent>* extents) {
  PBD_RETURN_IF_ERROR(check_range(offset, out.size(), false));
  const BlockSpan b = blocks_of(offset, out.size());
  // An ephemeral volume may overwrite buffered bytes in place: copy them out
  // under the same lock. (Its reads are memory copies; the store, if it holds
  // segments at all, is memory too.)
  if (opts_.ephemeral) {
    MutexLock lock(&layers_.mu());
    auto pieces = resolve_locked(top, b.first, b.count);
    if (!pieces.ok()) return pieces.status();
    return read_pieces(*pieces, offset, out, extents);
  }
  // Read-ahead first, so its GETs start beside this read's own.
  if (streams_) read_ahead(top, offset, out.size());
  auto pieces = resolve(top, b.first, b.count);
  if (!pieces.ok()) return pieces.status();
  return read_pieces(*pieces, offset, out, extents);
}

bool Volume::read_if_cached(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) {
  return read_view_if_cached(nullptr, offset, out, extents);
}

bool Volume::read_view_if_cached(const Layer* top, uint64_t offset, std::span<std::byte> out,
                                 std::vector<StatusExtent>* extents) {
  // Ephemeral reads copy under the engine mutex (read_view); their server runs them inline anyway.
  if (opts_.ephemeral || !check_range(offset, out.size(), false).ok()) return false;
  const BlockSpan b = blocks_of(offset, out.size());
  auto pieces = resolve(top, b.first, b.count);
  if (!pieces.ok() || !read_pieces(*pieces, offset, out, extents, true).ok()) return false;
  // Told only once served: a read handed on to read_view() is told there, once.
  if (streams_) read_ahead(top, offset, out.size());
  return true;
}

Status Volume::read_pieces(const std::vector<Piece>& pieces, uint64_t offset, std::span<std::byte> out,
                           std::vector<StatusExtent>* extents, bool cached_only) {
  const uint64_t end = offset + out.size();
  FrameBatch batch;
  PBD_RETURN_IF_ERROR(fetch_frames(pieces, &batch, cached_only));
  ExtentRun run(extents, offset);  // its cursor: device byte filled up to here
  for (const auto& piece : pieces) {
    const auto& [lba, nblocks, src] = piece;
    const uint64_t p_start = std::max(offset, lba * kBlockSize);
    const uint64_t p_end = std::min(end, (lba + nblocks) * kBlockSize);
    if (p_start > run.cursor()) {  // unmapped gap
      std::memset(out.data() + (run.cursor() - offset), 0, p_start - run.cursor());
      run.emit(p_start, ExtentState::kHole);
    }
    PBD_RETURN_IF_ERROR(read_blocks_into(piece, lba, p_start, out.subspan(p_start - offset, p_end - p_start), &batch));
    run.emit(p_end, src.state);
  }
  if (run.cursor() < end) {
    std::memset(out.data() + (run.cursor() - offset), 0, end - run.cursor());
    run.emit(end, ExtentState::kHole);
  }
  return Status::OK();
}

Status Volume::put_blocks(uint64_t lba, uint64_t nblocks, BlockSource src, uint64_t charged_bytes) {
  if (journal_) {
    // The journal gets the write after the buffer, in the order of their
    // write sequence numbers; the write is answered once both have it.
    PBD_RETURN_IF_ERROR(wait_for_journal_lag());
    // Large writes go to storage only; so does one too large for a journal
    // record (a small chunk size).
    const uint64_t bytes = nblocks * kBlockSize;
    const bool direct = src.state == ExtentState::kData &&
                        ((opts_.journal_direct_write_bytes != 0 && bytes >= opts_.journal_direct_write_bytes) ||
                         bytes > journal_->max_payload_bytes());
    const BlockSource copy = src;  // shares the bytes
    uint64_t wseq = 0;
    PBD_RETURN_IF_ERROR(pipeline_.buffer(lba, nblocks, std::move(src), charged_bytes, &wseq));
    if (direct) {
      // Before the write is answered, so any FLUSH that must cover it sees it.
      uint64_t seen = journal_direct_wseq_.load();
      while (seen < wseq && !journal_direct_wseq_.compare_exchange_weak(seen, wseq)) {
      }
      journal_direct_writes_.fetch_add(1, std::memory_order_relaxed);
    }
    return journal_append(wseq, lba, nblocks, copy, direct);
  }
  if (!opts_.ephemeral) return pipeline_.buffer(lba, nblocks, std::move(src), charged_bytes);
  // Nothing outlives this process, so there is nothing to upload: the blocks
  // go straight into the live layer, where an overwrite or a trim releases
  // the bytes it replaces (see VolumeOptions::ephemeral).
  MutexLock lock(&layers_.mu());
  PBD_RETURN_IF_ERROR(pipeline_.wait_for_space(lock, charged_bytes));
  PBD_RETURN_IF_ERROR(pipeline_.writable_locked());
  const std::shared_ptr<Layer>& live = layers_.live_locked();
  if (src.state == ExtentState::kData) src.private_to = live->id;
  live->assign(lba, nblocks, src);
  return Status::OK();
}

Status Volume::put_data(uint64_t lba, std::span<const std::byte> data, std::vector<std::byte>* owned) {
  const uint64_t nblocks = data.size() / kBlockSize;
  if (opts_.ephemeral) {
    // The live layer's own earlier write may hold every block: copy over it,
    // with no allocation and no change to the map.
    MutexLock lock(&layers_.mu());
    PBD_RETURN_IF_ERROR(pipeline_.writable_locked());
    if (overwrite_in_place_locked(lba, nblocks, data.data())) return Status::OK();
  }
  BlockSource src;
  src.state = ExtentState::kData;
  src.bytes =
      make_block_buffer(owned != nullptr ? std::move(*owned) : std::vector<std::byte>(data.begin(), data.end()));
  return put_blocks(lba, nblocks, std::move(src), data.size());
}

std::shared_ptr<const std::vector<std::byte>> Volume::make_block_buffer(std::vector<std::byte>&& bytes) {
  // Never a const object: an ephemeral volume may copy later writes into it.
  if (!opts_.ephemeral) return std::make_shared<std::vector<std::byte>>(std::move(bytes));
  const uint64_t size = bytes.size();
  buffer_bytes_->fetch_add(size, std::memory_order_relaxed);
  return std::shared_ptr<std::vector<std::byte>>(new std::vector<std::byte>(std::move(bytes)),
                                                 [counter = buffer_bytes_, size](std::vector<std::byte>* b) {
                                                   counter->fetch_sub(size, std::memory_order_relaxed);
                                                   delete b;
                                                 });
}

bool Volume::overwrite_in_place_locked(uint64_t lba, uint64_t nblocks, const std::byte* data) {
  // The blocks must be one extent of the live layer, all of it mapped.
  const Layer& live = *layers_.live_locked();
  std::optional<BlockSource> target;
  int pieces = 0;
  live.map.visit(lba, nblocks, [&](uint64_t start, uint64_t n, const BlockSource& src) {  // resident: ephemeral
    if (++pieces == 1 && start == lba && n == nblocks) target = src;
  });
  if (pieces != 1 || !target || target->state != ExtentState::kData || !target->buffered() ||
      target->private_to != live.id) {
    return false;
  }
  // Not a const object (make_block_buffer), and only this layer's map refers to it.
  auto* bytes = const_cast<std::byte*>(target->bytes->data()) + target->byte_offset;
  std::memcpy(bytes, data, nblocks * kBlockSize);
  overwrites_in_place_++;
  return true;
}

Status Volume::write(uint64_t offset, std::span<const std::byte> data, bool fua) {
  PBD_RETURN_IF_ERROR(check_range(offset, data.size(), true));
  {
    CutGate::Entry entry(gate_);
    PBD_RETURN_IF_ERROR(write_locked(offset, data));
  }
  return fua ? flush() : Status::OK();
}

Status Volume::write_owned(uint64_t offset, std::vector<std::byte>&& data, bool fua) {
  PBD_RETURN_IF_ERROR(check_range(offset, data.size(), true));
  {
    CutGate::Entry entry(gate_);
    PBD_RETURN_IF_ERROR(write_locked(offset, data, &data));
  }
  return fua ? flush() : Status::OK();
}

// REQUIRES: inside gate_. `owned`, when given, holds `data` and may be taken.
Status Volume::write_locked(uint64_t offset, std::span<const std::byte> data, std::vector<std::byte>* owned) {
  const uint64_t end = offset + data.size();
  if (offset % kBlockSize == 0 && end % kBlockSize == 0) return put_data(offset / kBlockSize, data, owned);
  // Read-modify-write of the partial blocks at either edge.
  MutexLock rmw(&rmw_mu_);
  const uint64_t first = offset / kBlockSize;
  const uint64_t last = (end + kBlockSize - 1) / kBlockSize;
  std::vector<std::byte> buf((last - first) * kBlockSize);
  const uint64_t base = first * kBlockSize;
  PBD_RETURN_IF_ERROR(read(base, std::span<std::byte>(buf.data(), kBlockSize)));
  if (last - first > 1) {
    PBD_RETURN_IF_ERROR(
        read((last - 1) * kBlockSize, std::span<std::byte>(buf.data() + buf.size() - kBlockSize, kBlockSize)));
  }
  std::memcpy(buf.data() + (offset - base), data.data(), data.size());
  return put_data(first, buf, &buf);
}

Status Volume::zero_range(uint64_t offset, uint64_t length, ExtentState whole_state, bool fua) {
  PBD_RETURN_IF_ERROR(check_range(offset, length, true));
  {
    CutGate::Entry entry(gate_);
    const uint64_t end = offset + length;
    const uint64_t first_whole = (offset + kBlockSize - 1) / kBlockSize;
    const uint64_t end_whole = end / kBlockSize;
    if (end_whole <= first_whole) {  // inside one or two partial blocks
      std::vector<std::byte> zeros(length);
      PBD_RETURN_IF_ERROR(write_locked(offset, zeros));
    } else {
      if (offset < first_whole * kBlockSize) {
        std::vector<std::byte> zeros(first_whole * kBlockSize - offset);
        PBD_RETURN_IF_ERROR(write_locked(offset, zeros));
      }
      if (end > end_whole * kBlockSize) {
        std::vector<std::byte> zeros(end - end_whole * kBlockSize);
        PBD_RETURN_IF_ERROR(write_locked(end_whole * kBlockSize, zeros));
      }
      BlockSource src;
      src.state = whole_state;
      PBD_RETURN_IF_ERROR(put_blocks(first_whole, end_whole - first_whole, src, 0));
    }
  }
  return fua ? flush() : Status::OK();
}

Status Volume::trim(uint64_t offset, uint64_t length, bool fua) {
  return zero_range(offset, length, ExtentState::kHole, fua);
}

Status Volume::write_zeroes(uint64_t offset, uint64_t length, bool fua) {
  return zero_range(offset, length, ExtentState::kZero, fua);
}

Status Volume::block_status(uint64_t offset, uint64_t length, size_t max_extents, std::vector<StatusExtent>* out) {
  return block_status_view(nullptr, offset, length, max_extents, out);
}

Status Volume::block_status_view(const Layer* top, uint64_t offset, uint64_t length, size_t max_extents,
                                 std::vector<StatusExtent>* out) {
  out->clear();
  PBD_RETURN_IF_ERROR(check_range(offset, length, false));
  const uint64_t end = offset + length;
  const BlockSpan b = blocks_of(offset, length);
  ExtentRun run(out, offset);
  auto pieces = resolve(top, b.first, b.count);
  if (!pieces.ok()) return pieces.status();
  for (const auto& [lba, nblocks, src] : *pieces) {
    run.emit(std::max(offset, lba * kBlockSize), ExtentState::kHole);
    run.emit(std::min(end, (lba + nblocks) * kBlockSize), src.state);
    if (run.size() > max_extents) break;
  }
  if (run.size() <= max_extents) run.emit(end, ExtentState::kHole);
  if (out->size() > max_extents) out->resize(std::max<size_t>(max_extents, 1));
  return Status::OK();
}

Status Volume::prefetch(uint64_t offset, uint64_t length) {
  PBD_RETURN_IF_ERROR(check_range(offset, length, false));
  const BlockSpan b = blocks_of(offset, length);
  FrameBatch batch;  // fetch_frames() also leaves what it fetched in the cache
  auto pieces = resolve(nullptr, b.first, b.count);
  if (!pieces.ok()) return pieces.status();
  return fetch_frames(*pieces, &batch);
}

}  // namespace portalbd
