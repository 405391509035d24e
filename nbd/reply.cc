#include "nbd/reply.h"

#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cassert>

#include "nbd/protocol.h"
#include "nbd/wire.h"

namespace portalbd::nbd {

bool ReplyWriter::simple(uint64_t cookie, uint32_t error, std::span<const std::byte> data) {
  std::byte header[proto::kSimpleReplyBytes];
  store_be32(header, proto::kSimpleReplyMagic);
  store_be32(header + 4, error);
  store_be64(header + 8, cookie);
  struct iovec iov[2] = {{header, sizeof header}, {const_cast<std::byte*>(data.data()), error ? 0 : data.size()}};
  return send(iov);
}

namespace {

void append(std::vector<std::byte>* out, std::span<const std::byte> bytes) {
  out->insert(out->end(), bytes.begin(), bytes.end());
}

// The header of one structured reply chunk carrying `length` bytes.
std::array<std::byte, proto::kStructuredHeaderBytes> chunk_header(uint64_t cookie, uint16_t type, bool done,
                                                                  size_t length) {
  std::array<std::byte, proto::kStructuredHeaderBytes> h;
  store_be32(h.data(), proto::kStructuredReplyMagic);
  store_be16(h.data() + 4, done ? proto::kReplyFlagDone : 0);
  store_be16(h.data() + 6, type);
  store_be64(h.data() + 8, cookie);
  store_be32(h.data() + 16, static_cast<uint32_t>(length));
  return h;
}

}  // namespace

bool ReplyWriter::simple_held(uint64_t cookie, uint32_t error, std::span<const std::byte> data) {
  if (broken()) return false;
  std::byte header[proto::kSimpleReplyBytes];
  store_be32(header, proto::kSimpleReplyMagic);
  store_be32(header + 4, error);
  store_be64(header + 8, cookie);
  append(&held_, header);
  if (error == 0) append(&held_, data);
  held_read_data_ |= error == 0 && !data.empty();
  ++held_count_;
  return true;
}

bool ReplyWriter::structured_held(uint64_t cookie, const std::vector<Chunk>& chunks) {
  assert(!chunks.empty());
  if (broken()) return false;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    append(&held_, chunk_header(cookie, c.type, i + 1 == chunks.size(), c.fields.size() + c.data.size()));
    append(&held_, c.fields);
    append(&held_, c.data);
    held_read_data_ |= c.type == proto::kReplyTypeOffsetData || c.type == proto::kReplyTypeOffsetHole;
  }
  ++held_count_;
  return true;
}

bool ReplyWriter::flush_held() {
  if (held_.empty()) return !broken();
  struct iovec iov[1] = {{held_.data(), held_.size()}};
  const bool ok = send(iov);
  held_.clear();
  held_count_ = 0;
  held_read_data_ = false;
  return ok;
}

bool ReplyWriter::structured(uint64_t cookie, const std::vector<Chunk>& chunks) {
  assert(!chunks.empty());
  std::vector<std::array<std::byte, proto::kStructuredHeaderBytes>> headers(chunks.size());
  std::vector<struct iovec> iov;
  iov.reserve(chunks.size() * 3);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    headers[i] = chunk_header(cookie, c.type, i + 1 == chunks.size(), c.fields.size() + c.data.size());
    iov.push_back({headers[i].data(), proto::kStructuredHeaderBytes});
    iov.push_back({const_cast<std::byte*>(c.fields.data()), c.fields.size()});
    iov.push_back({const_cast<std::byte*>(c.data.data()), c.data.size()});
  }
  return send(iov);
}

bool ReplyWriter::send(std::span<const struct iovec> iov) {
  MutexLock lock(&mu_);
  if (broken_.load(std::memory_order_relaxed)) return false;
  if (!out_.send_all(iov).ok()) {
    broken_.store(true, std::memory_order_relaxed);
    return false;
  }
  return true;
}

Chunk ReplyWriter::error_chunk(uint32_t error, const std::string& message) {
  Chunk c{proto::kReplyTypeError, {}, {}};
  WireWriter w;
  size_t len = std::min<size_t>(message.size(), proto::kMaxStringBytes);
  w.u32(error).u16(static_cast<uint16_t>(len)).bytes(std::string_view(message).substr(0, len));
  c.fields = std::move(w.data());
  return c;
}

Chunk ReplyWriter::error_offset_chunk(uint32_t error, const std::string& message, uint64_t offset) {
  Chunk c = error_chunk(error, message);
  c.type = proto::kReplyTypeErrorOffset;
  WireWriter w;
  w.u64(offset);
  c.fields.insert(c.fields.end(), w.data().begin(), w.data().end());
  return c;
}

Chunk ReplyWriter::data_chunk(uint64_t offset, std::span<const std::byte> data) {
  WireWriter w;
  w.u64(offset);
  return Chunk{proto::kReplyTypeOffsetData, std::move(w.data()), data};
}

Chunk ReplyWriter::hole_chunk(uint64_t offset, uint32_t length) {
  WireWriter w;
  w.u64(offset).u32(length);
  return Chunk{proto::kReplyTypeOffsetHole, std::move(w.data()), {}};
}

}  // namespace portalbd::nbd
