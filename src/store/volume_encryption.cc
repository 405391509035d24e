#include "src/store/volume_encryption.h"

#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "src/log/log.h"
#include "src/store/encrypted_store.h"

namespace portalbd {
namespace {

constexpr const char* kManifestKey = "volume.json";
constexpr const char* kCipher = "aes-256-gcm";
constexpr size_t kKeySaltBytes = 16;

Result<std::string> read_small_file(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    log::get("store")->warn("the {} is readable by others than its owner file={} mode={:o}: chmod 600 it", what,
                            log::quote(path), st.st_mode & 0777);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("cannot read the " + std::string(what) + " " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::InvalidArgument("cannot read the " + std::string(what) + " " + path);
  return text;
}

struct Kdf {
  std::string name = "none";  // "none" (key file) or "scrypt" (passphrase)
  uint64_t n = 0, r = 0, p = 0;
};

// Names the key or passphrase `source` gives, for an error: its file, or
// where the in-memory one came from.
std::string describe(const EncryptionKeySource& source) {
  if (!source.key_file.empty()) return "encryption key file " + source.key_file;
  if (!source.passphrase_file.empty()) return "encryption passphrase file " + source.passphrase_file;
  return source.key.empty() ? source.passphrase_option : source.key_option;
}

Result<aead::Key> master_key(const EncryptionKeySource& source, const Kdf& kdf,
                             const std::vector<unsigned char>& salt) {
  if (source.is_key()) {
    std::string bytes = source.key;
    if (!source.key_file.empty()) {
      auto text = read_small_file(source.key_file, "encryption key file");
      if (!text.ok()) return text.status();
      bytes = std::move(*text);
    }
    if (bytes.size() != aead::kKeyBytes) {
      return Status::InvalidArgument(describe(source) + " holds " + std::to_string(bytes.size()) +
                                     " bytes; it must hold exactly 32 random bytes "
                                     "(make one with: head -c 32 /dev/urandom > FILE)");
    }
    aead::Key key;
    std::copy(bytes.begin(), bytes.end(), key.begin());
    return key;
  }
  std::string passphrase = source.passphrase;
  if (!source.passphrase_file.empty()) {
    auto text = read_small_file(source.passphrase_file, "encryption passphrase file");
    if (!text.ok()) return text.status();
    passphrase = *text;
  }
  if (passphrase.ends_with("\n")) passphrase.pop_back();
  if (passphrase.ends_with("\r")) passphrase.pop_back();
  if (passphrase.empty()) return Status::InvalidArgument(describe(source) + " is empty");
  return aead::scrypt(passphrase, salt, kdf.n, kdf.r, kdf.p);
}

struct Derived {
  aead::Key data_key;
  aead::Key key_check;
};

Result<Derived> derive(const aead::Key& master, const std::vector<unsigned char>& salt) {
  auto data = aead::hkdf(master, salt, "portalbd data v1");
  if (!data.ok()) return data.status();
  auto check = aead::hkdf(master, salt, "portalbd key check v1");
  if (!check.ok()) return check.status();
  return Derived{*data, *check};
}

const std::string& option_for(const std::string& kdf_name, const EncryptionKeySource& source) {
  return kdf_name == "scrypt" ? source.passphrase_option : source.key_option;
}

// A new volume's member, for `source`.
Result<VolumeKeys> new_volume_keys(const EncryptionKeySource& source) {
  std::vector<unsigned char> salt(kKeySaltBytes);
  PBD_RETURN_IF_ERROR(aead::random_bytes(salt));
  Kdf kdf;
  if (!source.is_key()) kdf = Kdf{"scrypt", kScryptN, kScryptR, kScryptP};
  auto master = master_key(source, kdf, salt);
  if (!master.ok()) return master.status();
  auto derived = derive(*master, salt);
  if (!derived.ok()) return derived.status();
  nlohmann::json kdf_json = {{"name", kdf.name}};
  if (kdf.name == "scrypt") {
    kdf_json["n"] = kdf.n;
    kdf_json["r"] = kdf.r;
    kdf_json["p"] = kdf.p;
  }
  nlohmann::json member = {{"format", 1},
                           {"cipher", kCipher},
                           {"chunk_bytes", EncryptedStore::kChunkBytes},
                           {"key_salt", aead::to_hex(salt)},
                           {"kdf", kdf_json},
                           {"key_check", aead::to_hex(derived->key_check)}};
  return VolumeKeys{derived->data_key, member.dump()};
}

// An existing volume's keys, when `source` is its key.
Result<VolumeKeys> existing_volume_keys(const std::string& url, const nlohmann::json& member,
                                        const EncryptionKeySource& source) {
  Kdf kdf;
  std::vector<unsigned char> salt, check;
  try {
    if (member.at("format").get<int>() != 1 || member.at("cipher").get<std::string>() != kCipher ||
        member.at("chunk_bytes").get<uint64_t>() != EncryptedStore::kChunkBytes) {
      return Status::NotSupported("volume in " + url + " is encrypted in a format this portalbd does not know");
    }
    const auto& k = member.at("kdf");
    kdf.name = k.at("name").get<std::string>();
    if (kdf.name == "scrypt") {
      kdf.n = k.at("n").get<uint64_t>();
      kdf.r = k.at("r").get<uint64_t>();
      kdf.p = k.at("p").get<uint64_t>();
    } else if (kdf.name != "none") {
      return Status::NotSupported("volume in " + url + " uses key derivation '" + kdf.name + "', unknown here");
    }
    if (!aead::from_hex(member.at("key_salt").get<std::string>(), &salt) ||
        !aead::from_hex(member.at("key_check").get<std::string>(), &check) || check.size() != aead::kKeyBytes) {
      throw std::runtime_error("bad hex in key_salt or key_check");
    }
  } catch (const std::exception& e) {
    return Status::Corruption("volume.json in " + url + ": unreadable encryption member: " + e.what());
  }
  const bool passphrase_volume = kdf.name == "scrypt";
  if (passphrase_volume == source.is_key()) {
    return Status::InvalidArgument("volume in " + url + " is encrypted with a " +
                                   (passphrase_volume ? "passphrase" : "key file") + "; pass " +
                                   option_for(kdf.name, source) + " instead");
  }
  auto master = master_key(source, kdf, salt);
  if (!master.ok()) return master.status();
  auto derived = derive(*master, salt);
  if (!derived.ok()) return derived.status();
  if (!aead::equal_secret(derived->key_check, check)) {
    return Status::InvalidArgument("wrong encryption key for the volume in " + url + ": " + describe(source) +
                                   " does not match the key check value in volume.json; nothing was written");
  }
  return VolumeKeys{derived->data_key, member.dump()};
}

}  // namespace

Result<std::optional<VolumeKeys>> unlock_volume(ObjectStore& raw, const EncryptionKeySource& source) {
  const int given =
      !source.key_file.empty() + !source.passphrase_file.empty() + !source.key.empty() + !source.passphrase.empty();
  if (given > 1) {
    return Status::InvalidArgument(source.key_option + " and " + source.passphrase_option +
                                   " are both set; choose one");
  }
  std::vector<std::byte> bytes;
  Status st = raw.get(kManifestKey, &bytes);
  if (st.is(Status::Code::kNotFound)) {
    if (!source.configured()) return std::optional<VolumeKeys>();
    auto keys = new_volume_keys(source);
    if (!keys.ok()) return keys.status();
    return std::optional<VolumeKeys>(std::move(*keys));
  }
  PBD_RETURN_IF_ERROR(st.With("read volume.json"));
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  } catch (const std::exception& e) {
    return Status::Corruption("volume.json in " + raw.url() + " is unreadable: " + e.what());
  }
  if (!manifest.is_object() || !manifest.contains("encryption")) {
    if (!source.configured()) return std::optional<VolumeKeys>();
    return Status::InvalidArgument("volume in " + raw.url() +
                                   " is not encrypted, but an encryption key is configured; encrypting an existing "
                                   "volume is not supported (copy it to a new encrypted volume, or remove the key "
                                   "option)");
  }
  const auto& member = manifest["encryption"];
  if (!source.configured()) {
    std::string kdf_name;
    try {
      kdf_name = member.at("kdf").at("name").get<std::string>();
    } catch (const std::exception&) {
    }
    return Status::InvalidArgument("volume in " + raw.url() + " is encrypted; pass " + option_for(kdf_name, source));
  }
  auto keys = existing_volume_keys(raw.url(), member, source);
  if (!keys.ok()) return keys.status();
  return std::optional<VolumeKeys>(std::move(*keys));
}

Result<std::shared_ptr<ObjectStore>> open_volume_store(std::shared_ptr<ObjectStore> raw,
                                                       const EncryptionKeySource& source) {
  auto keys = unlock_volume(*raw, source);
  if (!keys.ok()) return keys.status();
  if (!keys->has_value()) return raw;
  return std::shared_ptr<ObjectStore>(
      std::make_shared<EncryptedStore>(std::move(raw), (*keys)->data_key, std::move((*keys)->manifest_member)));
}

}  // namespace portalbd
