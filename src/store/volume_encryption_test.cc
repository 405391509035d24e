#include "src/store/volume_encryption.h"

#include <doctest/doctest.h>

#include "src/store/memory_store.h"

namespace portalbd {
namespace {

// A key source holding its secret in memory, named as the CSI driver names it.
EncryptionKeySource in_memory(std::string key, std::string passphrase) {
  EncryptionKeySource s;
  s.key = std::move(key);
  s.passphrase = std::move(passphrase);
  s.key_option = "the encryptionKey secret";
  s.passphrase_option = "the encryptionPassphrase secret";
  return s;
}

// Creates the volume the way the engine does: a put_if_absent of volume.json.
void create_volume(ObjectStore& store) {
  const std::string text = R"({"format":1})";
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(text.data()),
                               reinterpret_cast<const std::byte*>(text.data()) + text.size());
  REQUIRE(store.put_if_absent("volume.json", bytes).ok());
}

bool has(const Status& st, const std::string& text) { return st.message().find(text) != std::string::npos; }

}  // namespace

TEST_CASE("open_volume_store: a key or passphrase held in memory unlocks like a file, and errors name its source") {
  const std::string key_a(32, 'a'), key_b(32, 'b');
  auto mem = std::make_shared<MemoryStore>();

  auto made = open_volume_store(mem, in_memory(key_a, ""));
  REQUIRE(made.ok());
  CHECK(*made != mem);  // sealed
  std::vector<std::byte> data(100, std::byte{7});
  create_volume(**made);
  REQUIRE((*made)->put("obj", data).ok());

  auto again = open_volume_store(mem, in_memory(key_a, ""));
  REQUIRE(again.ok());
  std::vector<std::byte> back;
  REQUIRE((*again)->get("obj", &back).ok());
  CHECK(back == data);

  auto wrong = open_volume_store(mem, in_memory(key_b, ""));
  REQUIRE_FALSE(wrong.ok());
  CHECK(has(wrong.status(), "wrong encryption key"));
  CHECK(has(wrong.status(), "the encryptionKey secret"));
  CHECK_FALSE(has(wrong.status(), key_b));

  EncryptionKeySource none;
  none.key_option = "the encryptionKey secret";
  auto missing = open_volume_store(mem, none);
  REQUIRE_FALSE(missing.ok());
  CHECK(has(missing.status(), "is encrypted; pass the encryptionKey secret"));

  auto other_kind = open_volume_store(mem, in_memory("", "a passphrase"));
  REQUIRE_FALSE(other_kind.ok());
  CHECK(has(other_kind.status(), "encrypted with a key file; pass the encryptionKey secret instead"));

  auto short_key = open_volume_store(std::make_shared<MemoryStore>(), in_memory(std::string(31, 'x'), ""));
  REQUIRE_FALSE(short_key.ok());
  CHECK(has(short_key.status(), "the encryptionKey secret holds 31 bytes"));

  auto both = open_volume_store(std::make_shared<MemoryStore>(), in_memory(key_a, "a passphrase"));
  REQUIRE_FALSE(both.ok());
  CHECK(has(both.status(), "both set"));
}

TEST_CASE("open_volume_store: an in-memory passphrase means what the same text in a passphrase file means") {
  auto mem = std::make_shared<MemoryStore>();
  create_volume(**open_volume_store(mem, in_memory("", "correct horse\n")));
  CHECK(open_volume_store(mem, in_memory("", "correct horse")).ok());  // one newline is not part of it
  CHECK(open_volume_store(mem, in_memory("", "correct horse\r\n")).ok());
  CHECK_FALSE(open_volume_store(mem, in_memory("", "correct horse\n\n")).ok());
  CHECK_FALSE(open_volume_store(mem, in_memory("", "correct hors")).ok());
  CHECK_FALSE(open_volume_store(std::make_shared<MemoryStore>(), in_memory("", "\n")).ok());  // empty
}

}  // namespace portalbd
