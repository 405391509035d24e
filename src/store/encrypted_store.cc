#include "src/store/encrypted_store.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace portalbd {
namespace {

constexpr const char* kManifestKey = "volume.json";
constexpr uint64_t kStoredChunk = EncryptedStore::kChunkBytes + EncryptedStore::kChunkOverhead;
constexpr char kAadLabel[] = "portalbd enc v1";
constexpr const char* kObjectKeyInfo = "portalbd object v1";

void put_be(std::vector<unsigned char>* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<unsigned char>(v >> (8 * i)));
}

std::vector<unsigned char> aad_for(const std::string& key, uint64_t chunk, bool last) {
  std::vector<unsigned char> aad(kAadLabel, kAadLabel + sizeof kAadLabel);  // with its NUL
  put_be(&aad, key.size(), 4);
  aad.insert(aad.end(), key.begin(), key.end());
  put_be(&aad, chunk, 8);
  aad.push_back(last ? 1 : 0);
  return aad;
}

aead::Nonce nonce_for(uint64_t chunk) {
  aead::Nonce n{};
  for (int i = 0; i < 8; ++i) n[4 + i] = static_cast<unsigned char>(chunk >> (8 * (7 - i)));
  return n;
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max() : a + b;
}

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  return b != 0 && a > std::numeric_limits<uint64_t>::max() / b ? std::numeric_limits<uint64_t>::max() : a * b;
}

Status damaged(const std::string& key, const std::string& why) {
  return Status::Corruption("object " + key + " failed decryption: " + why +
                            " (a wrong key, or the object was changed, cut short or put under another name)");
}

}  // namespace

bool EncryptedStore::passes_through(const std::string& key) {
  return key == kManifestKey || key.starts_with("lock/") || key.starts_with(kStoreProbePrefix);
}

uint64_t EncryptedStore::plaintext_size(uint64_t stored_bytes) {
  if (stored_bytes == 0) return 0;
  const uint64_t chunks = (stored_bytes + kStoredChunk - 1) / kStoredChunk;
  const uint64_t last = stored_bytes - (chunks - 1) * kStoredChunk;
  return (chunks - 1) * kChunkBytes + (last > kChunkOverhead ? last - kChunkOverhead : 0);
}

uint64_t EncryptedStore::stored_size(uint64_t plaintext_bytes) {
  const uint64_t chunks = std::max<uint64_t>(1, (plaintext_bytes + kChunkBytes - 1) / kChunkBytes);
  return plaintext_bytes + chunks * kChunkOverhead;
}

Status EncryptedStore::seal_object(const std::string& key, std::span<const std::byte> plaintext,
                                   std::vector<std::byte>* out) const {
  // A fresh random salt gives every object (every put, even of the same key)
  // its own key, so the chunk index alone is a unique nonce under it.
  std::array<unsigned char, kSaltBytes> salt;
  PBD_RETURN_IF_ERROR(aead::random_bytes(salt));
  auto object_key = aead::hkdf(data_key_, salt, kObjectKeyInfo);
  if (!object_key.ok()) return object_key.status();
  const uint64_t chunks = std::max<uint64_t>(1, (plaintext.size() + kChunkBytes - 1) / kChunkBytes);
  out->resize(stored_size(plaintext.size()));  // a reused buffer: no fresh pages, nothing zero-filled
  const auto* s = reinterpret_cast<const std::byte*>(salt.data());
  for (uint64_t i = 0; i < chunks; ++i) {
    const uint64_t at = i * kChunkBytes;
    const auto piece = plaintext.subspan(at, std::min<uint64_t>(kChunkBytes, plaintext.size() - at));
    std::byte* chunk = out->data() + i * kStoredChunk;
    std::memcpy(chunk, s, kSaltBytes);
    PBD_RETURN_IF_ERROR(aead::seal_into(*object_key, nonce_for(i), aad_for(key, i, i + 1 == chunks), piece,
                                        {chunk + kSaltBytes, piece.size() + aead::kTagBytes}));
  }
  return Status::OK();
}

std::vector<std::byte> EncryptedStore::take_buffer() {
  MutexLock lock(&spare_mu_);
  if (spare_.empty()) return {};
  std::vector<std::byte> buffer = std::move(spare_.back());
  spare_.pop_back();
  return buffer;
}

void EncryptedStore::give_back(std::vector<std::byte> buffer) {
  if (buffer.capacity() < kMinSpareBytes) return;
  MutexLock lock(&spare_mu_);
  if (spare_.size() < kMaxSpareBuffers) spare_.push_back(std::move(buffer));
}

void EncryptedStore::release_spare_memory() {
  std::vector<std::vector<std::byte>> dropped;
  {
    MutexLock lock(&spare_mu_);
    dropped.swap(spare_);
  }
  inner_->release_spare_memory();
}

size_t EncryptedStore::spare_buffers() const {
  MutexLock lock(&spare_mu_);
  return spare_.size();
}

Status EncryptedStore::put_sealed(const std::string& key, std::span<const std::byte> plaintext, bool if_absent) {
  std::vector<std::byte> sealed = take_buffer();
  Status st = seal_object(key, plaintext, &sealed);
  if (st.ok()) st = if_absent ? inner_->put_if_absent(key, sealed) : inner_->put(key, sealed);
  give_back(std::move(sealed));
  return st;
}

// Stored chunks are kStoredChunk bytes each but the object's last, which is
// shorter or equal. So a chunk followed by more stored bytes is not the last,
// and one that ends the buffer is (callers ask for one byte past the chunks
// they want for this). Opens at most `max_chunks` chunks.
Status EncryptedStore::open_chunks(const std::string& key, uint64_t first_chunk, uint64_t max_chunks,
                                   std::span<const std::byte> stored, std::vector<std::byte>* out) const {
  const std::byte* salt = nullptr;
  aead::Key object_key{};
  uint64_t pos = 0;
  for (uint64_t i = first_chunk; i - first_chunk < max_chunks && pos < stored.size(); ++i) {
    const uint64_t left = stored.size() - pos;
    const bool last = left <= kStoredChunk;
    const uint64_t size = last ? left : kStoredChunk;
    if (size < kChunkOverhead) return damaged(key, "chunk " + std::to_string(i) + " is cut short");
    const std::byte* chunk = stored.data() + pos;
    if (salt == nullptr) {
      salt = chunk;
      auto derived = aead::hkdf(data_key_, {reinterpret_cast<const unsigned char*>(salt), kSaltBytes}, kObjectKeyInfo);
      if (!derived.ok()) return derived.status();
      object_key = *derived;
    } else if (std::memcmp(salt, chunk, kSaltBytes) != 0) {
      return damaged(key, "chunk " + std::to_string(i) + " belongs to another object");
    }
    Status st = aead::open(object_key, nonce_for(i), aad_for(key, i, last),
                           stored.subspan(pos + kSaltBytes, size - kSaltBytes), out);
    if (!st.ok()) {
      return st.is(Status::Code::kCorruption) ? damaged(key, "chunk " + std::to_string(i) + " does not authenticate")
                                              : st;
    }
    pos += size;
  }
  return Status::OK();
}

Result<std::vector<std::byte>> EncryptedStore::stamp_manifest(std::span<const std::byte> data) const {
  try {
    auto m = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data.data()), data.size()));
    m["encryption"] = nlohmann::json::parse(manifest_member_);
    const std::string text = m.dump(2) + "\n";
    const auto* p = reinterpret_cast<const std::byte*>(text.data());
    return std::vector<std::byte>(p, p + text.size());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("cannot record encryption in volume.json: ") + e.what());
  }
}

Status EncryptedStore::put(const std::string& key, std::span<const std::byte> data) {
  if (key == kManifestKey) {
    auto stamped = stamp_manifest(data);
    if (!stamped.ok()) return stamped.status();
    return inner_->put(key, *stamped);
  }
  if (passes_through(key)) return inner_->put(key, data);
  return put_sealed(key, data, /*if_absent=*/false);
}

Status EncryptedStore::put_if_absent(const std::string& key, std::span<const std::byte> data) {
  if (key == kManifestKey) {
    auto stamped = stamp_manifest(data);
    if (!stamped.ok()) return stamped.status();
    return inner_->put_if_absent(key, *stamped);
  }
  if (passes_through(key)) return inner_->put_if_absent(key, data);
  return put_sealed(key, data, /*if_absent=*/true);
}

Status EncryptedStore::put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) {
  if (passes_through(key)) return put(key, *data);
  // The inner store may keep what it is given (memory://): a buffer of its
  // own, never one from the spares.
  std::vector<std::byte> sealed;
  PBD_RETURN_IF_ERROR(seal_object(key, *data, &sealed));
  return inner_->put_shared(key, std::make_shared<const std::vector<std::byte>>(std::move(sealed)));
}

Status EncryptedStore::get_range(const std::string& key, uint64_t offset, uint64_t length,
                                 std::vector<std::byte>* out) {
  ObjectStore* inner = inner_.get();
  return get_range_via([inner](const std::string& k, uint64_t off, uint64_t len,
                               std::vector<std::byte>* o) { return inner->get_range(k, off, len, o); },
                       key, offset, length, out);
}

Result<uint64_t> EncryptedStore::get_range_cached(const std::string& key, uint64_t offset, std::span<std::byte> out) {
  ObjectStore* inner = inner_.get();
  if (passes_through(key)) return inner->get_range_cached(key, offset, out);
  const auto cached = [inner](const std::string& k, uint64_t off, uint64_t len, std::vector<std::byte>* o) {
    o->resize(len);
    auto n = inner->get_range_cached(k, off, std::span<std::byte>(*o));
    if (!n.ok()) return n.status();
    o->resize(*n);
    return Status::OK();
  };
  std::vector<std::byte> plain;
  PBD_RETURN_IF_ERROR(get_range_via(cached, key, offset, out.size(), &plain));
  std::copy(plain.begin(), plain.end(), out.begin());
  return plain.size();
}

Status EncryptedStore::get_range_via(InnerGet inner_get, const std::string& key, uint64_t offset, uint64_t length,
                                     std::vector<std::byte>* out) {
  if (passes_through(key)) return inner_get(key, offset, length, out);
  out->clear();
  if (length == 0) return inner_get(key, 0, 0, out);    // still kNotFound when missing
  const uint64_t end = saturating_add(offset, length);  // plaintext, exclusive
  const uint64_t first = offset / kChunkBytes;
  const uint64_t chunks = (end - 1) / kChunkBytes - first + 1;
  // The covering chunks and one byte more: it says whether the last of them
  // is the object's last chunk (whose AAD says so).
  const uint64_t stored_at = saturating_mul(first, kStoredChunk);
  const uint64_t stored_len = saturating_add(saturating_mul(chunks, kStoredChunk), 1);
  std::vector<std::byte> stored;
  PBD_RETURN_IF_ERROR(inner_get(key, stored_at, stored_len, &stored));
  if (stored.empty()) {
    // Past the end, or cut at a chunk boundary: the chunk before must be
    // the object's last.
    if (first == 0) return damaged(key, "the object is empty");
    std::vector<std::byte> previous;
    PBD_RETURN_IF_ERROR(inner_get(key, stored_at - kStoredChunk, kStoredChunk + 1, &previous));
    std::vector<std::byte> ignored;
    return open_chunks(key, first - 1, 1, previous, &ignored);
  }
  std::vector<std::byte> plain;
  PBD_RETURN_IF_ERROR(open_chunks(key, first, chunks, stored, &plain));
  const uint64_t skip = offset - first * kChunkBytes;
  if (skip < plain.size()) {
    const uint64_t take = std::min<uint64_t>(plain.size() - skip, end - offset);
    out->assign(plain.begin() + static_cast<ptrdiff_t>(skip), plain.begin() + static_cast<ptrdiff_t>(skip + take));
  }
  return Status::OK();
}

Status EncryptedStore::get(const std::string& key, std::vector<std::byte>* out) {
  if (passes_through(key)) return inner_->get(key, out);
  std::vector<std::byte> stored;
  PBD_RETURN_IF_ERROR(inner_->get(key, &stored));
  out->clear();
  if (stored.empty()) return damaged(key, "the object is empty");
  std::vector<std::byte> plain;  // nothing of a damaged object reaches *out
  PBD_RETURN_IF_ERROR(open_chunks(key, 0, std::numeric_limits<uint64_t>::max(), stored, &plain));
  *out = std::move(plain);
  return Status::OK();
}

std::shared_ptr<const std::vector<std::byte>> EncryptedStore::get_shared(const std::string& key) {
  return passes_through(key) ? inner_->get_shared(key) : nullptr;
}

Result<ObjectInfo> EncryptedStore::head(const std::string& key) {
  auto info = inner_->head(key);
  if (info.ok() && !passes_through(key)) info->size = plaintext_size(info->size);
  return info;
}

Status EncryptedStore::list(const std::string& prefix, std::vector<ObjectInfo>* out) {
  PBD_RETURN_IF_ERROR(inner_->list(prefix, out));
  for (ObjectInfo& info : *out) {
    if (!passes_through(info.key)) info.size = plaintext_size(info.size);
  }
  return Status::OK();
}

}  // namespace portalbd
