// EncryptedStore: an ObjectStore decorator that seals every object of the
// volume with AES-256-GCM before it reaches the inner store, and opens and
// authenticates it on the way back, so the engine above works on plaintext
// and does not change (issue 25). Compression happens before encryption
// because the engine compresses frames before it puts them.
//
// Object format (docs/design.md, "Encryption"): the plaintext is cut into
// kChunkBytes chunks (at least one, so an empty object is one empty chunk);
// chunk i is stored as
//
//     salt (16 bytes, the same in every chunk of one object) |
//     AES-256-GCM ciphertext of the chunk | tag (16 bytes)
//
//   * key:   HKDF-SHA256(data key, salt, "portalbd object v1"), one per object
//   * nonce: chunk index i, 96-bit big-endian (unique within the object key)
//   * AAD:   "portalbd enc v1", the object's key, i, and whether i is the last
//            chunk, so a chunk moved within an object, an object put under
//            another key, and an object cut at a chunk boundary all fail
//            authentication.
//
// A stored object is therefore n*kChunkOverhead bytes longer than its
// plaintext, which head() and list() undo (plaintext_size()), and the
// plaintext range a get_range() asks for maps onto one ranged GET of the
// chunks covering it plus one byte (which tells whether the last of them is
// the object's last chunk).
//
// Not sealed (passes_through()): volume.json, which says the volume is
// encrypted and must be readable without the key (the store adds the
// volume's "encryption" member to every volume.json written through it),
// the writer lease under lock/ (a holder's name, read before the volume is
// open), and the store's own probes.
//
// A chunk that fails authentication, or an object cut short, is kCorruption
// naming the object's key, like a checksum failure.
//
// Memory: sealing needs a second buffer the size of the object (64 MiB for a
// segment). Fresh buffers that size come from the kernel page by page, each
// page zeroed first, which cost more than the AES itself, so up to
// kMaxSpareBuffers sealed buffers are kept for the next put until the write
// path says its uploads have run out of work (release_spare_memory()).
//
// Ownership: holds a shared_ptr to the inner store, a copy of the key and the
// spare buffers.
// Thread-safety: every method is safe to call concurrently (the spares are
// under spare_mu_).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/store/aead.h"
#include "src/store/object_store.h"
#include "src/util/mutex.h"

namespace portalbd {

class EncryptedStore final : public ObjectStore {
 public:
  static constexpr uint64_t kChunkBytes = 64 * 1024;
  static constexpr uint64_t kSaltBytes = 16;
  static constexpr uint64_t kChunkOverhead = kSaltBytes + aead::kTagBytes;

  // `data_key`: the volume's data subkey (volume_encryption.h).
  // `manifest_member`: JSON text of volume.json's "encryption" member, set in
  // every volume.json put through this store.
  EncryptedStore(std::shared_ptr<ObjectStore> inner, const aead::Key& data_key, std::string manifest_member)
      : inner_(std::move(inner)), data_key_(data_key), manifest_member_(std::move(manifest_member)) {}

  static bool passes_through(const std::string& key);
  // The plaintext size of a stored object of `stored_bytes`, and back.
  static uint64_t plaintext_size(uint64_t stored_bytes);
  static uint64_t stored_size(uint64_t plaintext_bytes);

  Status put(const std::string& key, std::span<const std::byte> data) override;
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override;
  Status put_shared(const std::string& key, std::shared_ptr<const std::vector<std::byte>> data) override;
  bool supports_conditional_put() const override { return inner_->supports_conditional_put(); }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override;
  // The inner store's cached read of the covering chunks, opened as get_range() does.
  Result<uint64_t> get_range_cached(const std::string& key, uint64_t offset, std::span<std::byte> out) override;
  Status get(const std::string& key, std::vector<std::byte>* out) override;
  // nullptr: the bytes it keeps are sealed (callers use get_range).
  std::shared_ptr<const std::vector<std::byte>> get_shared(const std::string& key) override;
  // The sealed bytes, and sealed bytes put back: a quarantined object stays
  // sealed under its original key (moved back there, it opens again).
  Status get_as_stored(const std::string& key, std::vector<std::byte>* out) override { return inner_->get(key, out); }
  Status put_as_stored(const std::string& key, std::span<const std::byte> data) override {
    return inner_->put(key, data);
  }
  Result<ObjectInfo> head(const std::string& key) override;
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override;
  Status remove(const std::string& key) override { return inner_->remove(key); }
  std::string url() const override { return inner_->url(); }
  bool persistent() const override { return inner_->persistent(); }
  std::optional<StoreMetrics> metrics() const override { return inner_->metrics(); }
  void release_spare_memory() override EXCLUDES(spare_mu_);
  // How many sealed buffers are kept for the next put (tests).
  size_t spare_buffers() const EXCLUDES(spare_mu_);

 private:
  // Spares: as many as uploads run at once on s3:// by default; only
  // buffers worth keeping (segments, not roots records).
  static constexpr size_t kMaxSpareBuffers = 4;
  static constexpr size_t kMinSpareBytes = 1 << 20;

  // The stored form of `plaintext` under `key`, into *out (resized; its
  // capacity is reused).
  Status seal_object(const std::string& key, std::span<const std::byte> plaintext, std::vector<std::byte>* out) const;
  // Seals into a spare buffer (or a new one), puts it, keeps the buffer.
  Status put_sealed(const std::string& key, std::span<const std::byte> plaintext, bool if_absent) EXCLUDES(spare_mu_);
  std::vector<std::byte> take_buffer() EXCLUDES(spare_mu_);
  void give_back(std::vector<std::byte> buffer) EXCLUDES(spare_mu_);
  // Opens at most `max_chunks` of the stored chunks in `stored`, the first
  // being chunk `first_chunk` of `key`, and appends their plaintext. A chunk
  // that ends `stored` is opened as the object's last.
  Status open_chunks(const std::string& key, uint64_t first_chunk, uint64_t max_chunks,
                     std::span<const std::byte> stored, std::vector<std::byte>* out) const;
  // get_range() through `inner_get` (the inner store's get_range, or its cached read).
  using InnerGet =
      std::function<Status(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out)>;
  Status get_range_via(InnerGet inner_get, const std::string& key, uint64_t offset, uint64_t length,
                       std::vector<std::byte>* out);
  // volume.json with the "encryption" member set.
  Result<std::vector<std::byte>> stamp_manifest(std::span<const std::byte> data) const;

  const std::shared_ptr<ObjectStore> inner_;
  const aead::Key data_key_;
  const std::string manifest_member_;
  mutable Mutex spare_mu_;
  std::vector<std::vector<std::byte>> spare_ GUARDED_BY(spare_mu_);
};

}  // namespace portalbd
