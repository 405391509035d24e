// Volume encryption keys: where the daemon's key comes from (a key file or a
// passphrase), what volume.json records about it (its "encryption" member),
// and the check at start that the key and the volume agree, before anything
// is written to storage.
//
// volume.json's member (docs/design.md, "Encryption"):
//
//   "encryption": {"format": 1, "cipher": "aes-256-gcm", "chunk_bytes": 65536,
//                  "key_salt": "<32 hex>", "kdf": {"name": "none"} |
//                  {"name": "scrypt", "n": 32768, "r": 8, "p": 1},
//                  "key_check": "<64 hex>"}
//
// master key = the key file's 32 bytes, or scrypt(passphrase, key_salt, n, r, p)
// data key   = HKDF-SHA256(master, key_salt, "portalbd data v1")
// key check  = HKDF-SHA256(master, key_salt, "portalbd key check v1")
//
// The random key_salt makes the data key of every volume its own, even under
// one key file, so an object copied from another volume fails authentication.
// The key check value is a one-way function of the master key: it tells a
// wrong key at start, and says nothing about the data key.
//
// Thread-safety: free functions with no shared state.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "src/store/aead.h"
#include "src/store/object_store.h"

namespace portalbd {

// Where the key comes from; at most one of the four is set. The daemon
// reads files; a caller that got the secret elsewhere (the CSI controller,
// from a Kubernetes Secret) passes it in memory, and names where it came
// from in key_option/passphrase_option, which errors use to say what to
// give instead. Errors never quote a key or passphrase.
struct EncryptionKeySource {
  std::string key_file;         // exactly 32 raw bytes
  std::string passphrase_file;  // the passphrase; one trailing newline is not part of it
  std::string key;              // in memory: exactly 32 raw bytes
  std::string passphrase;       // in memory: as a passphrase file would hold it
  std::string key_option = "--encryption-key-file (encryption.key_file)";
  std::string passphrase_option = "--encryption-passphrase-file (encryption.passphrase_file)";
  bool configured() const {
    return !key_file.empty() || !passphrase_file.empty() || !key.empty() || !passphrase.empty();
  }
  // A 32-byte key rather than a passphrase (through scrypt).
  bool is_key() const { return !key_file.empty() || !key.empty(); }
};

// scrypt's cost for new volumes: 32 MiB and about 0.1 s per start.
inline constexpr uint64_t kScryptN = 1u << 15;
inline constexpr uint64_t kScryptR = 8;
inline constexpr uint64_t kScryptP = 1;

struct VolumeKeys {
  aead::Key data_key{};
  std::string manifest_member;  // JSON text of volume.json's "encryption"
};

// Reads volume.json from `raw` (never writes) and checks it against `source`:
//   * encrypted volume, key given: the key check must match, else
//     kInvalidArgument "wrong encryption key";
//   * encrypted volume, no key: kInvalidArgument saying which option to pass;
//   * plain volume, key given: kInvalidArgument (encrypting an existing
//     volume is not supported);
//   * no volume.json yet, key given: new parameters (random salt);
//   * plain or new volume, no key: nullopt (no encryption).
// A key file that is not exactly 32 bytes, or an empty or unreadable
// passphrase file, is kInvalidArgument naming the file.
Result<std::optional<VolumeKeys>> unlock_volume(ObjectStore& raw, const EncryptionKeySource& source);

// `raw`, wrapped in an EncryptedStore when unlock_volume() says the volume is
// (or is to be) encrypted; `raw` itself otherwise.
Result<std::shared_ptr<ObjectStore>> open_volume_store(std::shared_ptr<ObjectStore> raw,
                                                       const EncryptionKeySource& source);

}  // namespace portalbd
