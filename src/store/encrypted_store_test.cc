#include "src/store/encrypted_store.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "src/store/file_store.h"
#include "src/store/memory_store.h"
#include "src/store/volume_encryption.h"
#include "tests/unit/temp_dir.h"

using namespace portalbd;

namespace {

constexpr uint64_t C = EncryptedStore::kChunkBytes;

std::vector<std::byte> pattern(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = std::byte(rng() & 0xff);
  return out;
}

std::vector<std::byte> bytes(const std::string& s) {
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

aead::Key key_of(unsigned char fill) {
  aead::Key k;
  k.fill(fill);
  return k;
}

struct Fixture {
  std::shared_ptr<MemoryStore> mem = std::make_shared<MemoryStore>();
  EncryptedStore enc{mem, key_of(7), R"({"format":1})"};

  std::vector<std::byte> raw(const std::string& key) {
    std::vector<std::byte> out;
    REQUIRE(mem->get(key, &out).ok());
    return out;
  }
  void put_raw(const std::string& key, const std::vector<std::byte>& data) { REQUIRE(mem->put(key, data).ok()); }
};

bool names(const Status& st, const std::string& key) {
  return st.is(Status::Code::kCorruption) && st.ToString().find(key) != std::string::npos;
}

}  // namespace

TEST_CASE("store: EncryptedStore round trips objects of every size and range shape across chunks") {
  Fixture f;
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, C - 1, C, C + 1, 2 * C, 3 * C + 17}) {
    CAPTURE(size);
    const std::string key = "segments/" + std::to_string(size);
    const auto data = pattern(size, static_cast<uint32_t>(size));
    REQUIRE(f.enc.put(key, data).ok());
    CHECK(f.raw(key).size() == EncryptedStore::stored_size(size));
    CHECK(EncryptedStore::plaintext_size(EncryptedStore::stored_size(size)) == size);
    auto h = f.enc.head(key);
    REQUIRE(h.ok());
    CHECK(h->size == size);
    std::vector<ObjectInfo> listed;
    REQUIRE(f.enc.list(key, &listed).ok());
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].size == size);
    std::vector<std::byte> out;
    REQUIRE(f.enc.get(key, &out).ok());
    CHECK(out == data);
    const std::vector<uint64_t> points = {0, 1, C - 1, C, C + 1, 2 * C - 1, 2 * C, 2 * C + 1, size, size + 1, 5 * C};
    for (uint64_t off : points) {
      for (uint64_t len : {uint64_t{0}, uint64_t{1}, uint64_t{2}, C - 1, C, C + 1, 2 * C + 3, ~uint64_t{0}}) {
        CAPTURE(off);
        CAPTURE(len);
        Status st = f.enc.get_range(key, off, len, &out);
        REQUIRE(st.ok());
        std::vector<std::byte> want;
        if (off < size) want.assign(data.begin() + off, data.begin() + off + std::min(len, size - off));
        CHECK(out == want);
      }
    }
  }
  std::vector<std::byte> out;
  CHECK(f.enc.get("segments/none", &out).is(Status::Code::kNotFound));
  CHECK(f.enc.get_range("segments/none", 0, 10, &out).is(Status::Code::kNotFound));
  CHECK(f.enc.get_range("segments/none", 0, 0, &out).is(Status::Code::kNotFound));
}

TEST_CASE("store: EncryptedStore's cached reads open what the inner store's cached reads give") {
  testing::TempDir tmp;
  auto file = FileStore::Open(tmp.path + "/data");
  REQUIRE(file.ok());
  EncryptedStore enc{*file, key_of(7), R"({"format":1})"};
  const uint64_t size = 3 * C + 17;
  const auto data = pattern(size, 5);
  REQUIRE(enc.put("segments/1", data).ok());
  for (uint64_t off : {uint64_t{0}, C - 1, C, 2 * C + 1, size - 1, size, size + 1}) {
    for (uint64_t len : {uint64_t{1}, C + 1, size}) {
      CAPTURE(off);
      CAPTURE(len);
      std::vector<std::byte> want, got(len);
      REQUIRE(enc.get_range("segments/1", off, len, &want).ok());
      auto n = enc.get_range_cached("segments/1", off, got);
      REQUIRE(n.ok());
      got.resize(*n);
      CHECK(got == want);
    }
  }
  // A store without cached reads: declined, never guessed.
  Fixture f;
  REQUIRE(f.enc.put("segments/1", data).ok());
  std::vector<std::byte> out(10);
  CHECK(f.enc.get_range_cached("segments/1", 0, out).status().is(Status::Code::kUnavailable));
}

TEST_CASE("store: EncryptedStore stores no plaintext, and a second put of the same bytes differs") {
  Fixture f;
  const std::string marker = "PORTALBD-MARKER-0123456789";
  std::string text;
  while (text.size() < 3 * C) text += marker;
  REQUIRE(f.enc.put("segments/a", bytes(text)).ok());
  const auto first = f.raw("segments/a");
  const std::string stored(reinterpret_cast<const char*>(first.data()), first.size());
  CHECK(stored.find("PORTALBD-MARKER") == std::string::npos);
  REQUIRE(f.enc.put_shared("segments/a", std::make_shared<const std::vector<std::byte>>(bytes(text))).ok());
  CHECK(f.raw("segments/a") != first);  // a fresh salt: a fresh key and nonces
  std::vector<std::byte> out;
  REQUIRE(f.enc.get("segments/a", &out).ok());
  CHECK(out == bytes(text));
  CHECK(f.enc.get_shared("segments/a") == nullptr);
}

TEST_CASE("store: EncryptedStore reuses its sealed buffers across puts of any size, and frees them when told") {
  Fixture f;
  // Large, small, large again, each into a reused buffer: every stored
  // object must be exactly its own sealed size (no tail of the previous one)
  // and open to its own bytes.
  const std::vector<uint64_t> sizes = {24 * C + 5, 17 * C + 1, 24 * C, 18 * C + 17};  // each above 1 MiB
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto data = pattern(sizes[i], static_cast<uint32_t>(40 + i));
    const std::string key = "segments/" + std::to_string(i);
    const Status st = i % 2 == 0 ? f.enc.put(key, data) : f.enc.put_if_absent(key, data);
    REQUIRE(st.ok());
    CHECK(f.raw(key).size() == EncryptedStore::stored_size(sizes[i]));
    CHECK(f.enc.spare_buffers() == 1);  // the one buffer, back after each put
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<std::byte> back;
    REQUIRE(f.enc.get("segments/" + std::to_string(i), &back).ok());
    CHECK(back == pattern(sizes[i], static_cast<uint32_t>(40 + i)));
  }
  // Small objects (roots records, checkpoints of a small volume) keep nothing.
  EncryptedStore fresh{f.mem, key_of(7), R"({"format":1})"};
  REQUIRE(fresh.put("roots/1", bytes("small")).ok());
  CHECK(fresh.spare_buffers() == 0);
  f.enc.release_spare_memory();
  CHECK(f.enc.spare_buffers() == 0);
}

TEST_CASE("store: EncryptedStore reports a flipped bit in any chunk as corruption naming the object") {
  Fixture f;
  const auto data = pattern(3 * C + 100, 1);
  REQUIRE(f.enc.put("segments/x.seg", data).ok());
  const auto good = f.raw("segments/x.seg");
  // A bit in each chunk's salt, ciphertext and tag.
  const uint64_t stored_chunk = C + EncryptedStore::kChunkOverhead;
  for (uint64_t chunk = 0; chunk < 4; ++chunk) {
    for (uint64_t at : {uint64_t{0}, uint64_t{20}, uint64_t{1000}}) {
      const uint64_t pos = chunk * stored_chunk + at;
      if (pos >= good.size()) continue;
      CAPTURE(pos);
      auto bad = good;
      bad[pos] ^= std::byte{0x10};
      f.put_raw("segments/x.seg", bad);
      std::vector<std::byte> out;
      CHECK(names(f.enc.get("segments/x.seg", &out), "segments/x.seg"));
      CHECK(out.empty());
      CHECK(names(f.enc.get_range("segments/x.seg", chunk * C, 10, &out), "segments/x.seg"));
      // A read of other chunks does not see it.
      const uint64_t other = (chunk + 1) % 4;
      CHECK(f.enc.get_range("segments/x.seg", other * C, 10, &out).ok());
    }
  }
  auto bad = good;
  bad.back() ^= std::byte{1};  // the last tag
  f.put_raw("segments/x.seg", bad);
  std::vector<std::byte> out;
  CHECK(names(f.enc.get_range("segments/x.seg", 3 * C, 1, &out), "segments/x.seg"));
}

TEST_CASE("store: EncryptedStore refuses a truncated object, a moved object, mixed chunks and a wrong key") {
  Fixture f;
  const auto data = pattern(3 * C, 2);
  REQUIRE(f.enc.put("segments/1.seg", data).ok());
  const auto good = f.raw("segments/1.seg");
  const uint64_t stored_chunk = C + EncryptedStore::kChunkOverhead;
  std::vector<std::byte> out;

  SUBCASE("cut at a chunk boundary") {
    f.put_raw("segments/1.seg", std::vector<std::byte>(good.begin(), good.begin() + 2 * stored_chunk));
    CHECK(names(f.enc.get("segments/1.seg", &out), "segments/1.seg"));
    CHECK(names(f.enc.get_range("segments/1.seg", C, 10, &out), "segments/1.seg"));      // chunk 1 now looks last
    CHECK(names(f.enc.get_range("segments/1.seg", 2 * C, 10, &out), "segments/1.seg"));  // chunk 2 is gone
  }
  SUBCASE("cut inside a chunk") {
    f.put_raw("segments/1.seg", std::vector<std::byte>(good.begin(), good.end() - 5));
    CHECK(names(f.enc.get("segments/1.seg", &out), "segments/1.seg"));
    CHECK(names(f.enc.get_range("segments/1.seg", 2 * C, 10, &out), "segments/1.seg"));
  }
  SUBCASE("cut to nothing") {
    f.put_raw("segments/1.seg", {});
    CHECK(names(f.enc.get("segments/1.seg", &out), "segments/1.seg"));
    CHECK(names(f.enc.get_range("segments/1.seg", 0, 10, &out), "segments/1.seg"));
  }
  SUBCASE("copied under another key") {
    f.put_raw("segments/2.seg", good);
    CHECK(names(f.enc.get("segments/2.seg", &out), "segments/2.seg"));
    CHECK(names(f.enc.get_range("segments/2.seg", C, 10, &out), "segments/2.seg"));
  }
  SUBCASE("chunks swapped within the object") {
    auto swapped = good;
    std::swap_ranges(swapped.begin(), swapped.begin() + stored_chunk, swapped.begin() + stored_chunk);
    f.put_raw("segments/1.seg", swapped);
    CHECK(names(f.enc.get_range("segments/1.seg", 0, 10, &out), "segments/1.seg"));
  }
  SUBCASE("a chunk of another put of the same key") {
    REQUIRE(f.enc.put("segments/1.seg", data).ok());
    auto mixed = f.raw("segments/1.seg");
    std::copy(good.begin(), good.begin() + stored_chunk, mixed.begin());
    f.put_raw("segments/1.seg", mixed);
    CHECK(names(f.enc.get("segments/1.seg", &out), "segments/1.seg"));
  }
  SUBCASE("a wrong key") {
    EncryptedStore other(f.mem, key_of(8), "{}");
    CHECK(names(other.get("segments/1.seg", &out), "segments/1.seg"));
    CHECK(names(other.get_range("segments/1.seg", C + 5, 10, &out), "segments/1.seg"));
  }
}

TEST_CASE("store: EncryptedStore leaves volume.json and the lease readable and stamps the manifest") {
  Fixture f;
  REQUIRE(f.enc.put_if_absent("volume.json", bytes(R"({"uuid":"u","size_bytes":1})")).ok());
  const auto manifest = f.raw("volume.json");
  const std::string text(reinterpret_cast<const char*>(manifest.data()), manifest.size());
  CHECK(text.find("\"uuid\": \"u\"") != std::string::npos);
  CHECK(text.find("\"encryption\"") != std::string::npos);
  REQUIRE(f.enc.put("lock/writer", bytes("holder")).ok());
  CHECK(f.raw("lock/writer") == bytes("holder"));
}

TEST_CASE("store: EncryptedStore moves an object aside as stored, even one that fails decryption") {
  Fixture f;
  const auto data = pattern(C + 9, 3);
  REQUIRE(f.enc.put("segments/5.seg", data).ok());
  auto bad = f.raw("segments/5.seg");
  bad[40] ^= std::byte{1};
  f.put_raw("segments/5.seg", bad);
  std::vector<std::byte> out;
  REQUIRE(names(f.enc.get("segments/5.seg", &out), "segments/5.seg"));
  // What the engine's quarantine does: the bytes as stored, put under quarantine/.
  std::vector<std::byte> stored;
  REQUIRE(f.enc.get_as_stored("segments/5.seg", &stored).ok());
  CHECK(stored == bad);
  REQUIRE(f.enc.put_as_stored("quarantine/segments/5.seg", stored).ok());
  CHECK(f.raw("quarantine/segments/5.seg") == bad);
  // An intact object moved aside and back opens again under its own key.
  REQUIRE(f.enc.put("segments/6.seg", data).ok());
  REQUIRE(f.enc.get_as_stored("segments/6.seg", &stored).ok());
  REQUIRE(f.enc.put_as_stored("quarantine/segments/6.seg", stored).ok());
  CHECK(names(f.enc.get("quarantine/segments/6.seg", &out), "quarantine/segments/6.seg"));
  REQUIRE(f.enc.remove("segments/6.seg").ok());
  REQUIRE(f.enc.get_as_stored("quarantine/segments/6.seg", &stored).ok());
  REQUIRE(f.enc.put_as_stored("segments/6.seg", stored).ok());
  REQUIRE(f.enc.get("segments/6.seg", &out).ok());
  CHECK(out == data);
}

namespace {

struct KeyFiles {
  std::filesystem::path dir;
  KeyFiles() {
    dir = std::filesystem::temp_directory_path() / ("pbd-enc-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  ~KeyFiles() { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& content) {
    const auto path = dir / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }
};

// Creates the volume the way the engine does: a put_if_absent of volume.json.
void create_volume(ObjectStore& store) { REQUIRE(store.put_if_absent("volume.json", bytes(R"({"format":1})")).ok()); }

std::string message(const Status& st) { return st.ToString(); }

}  // namespace

TEST_CASE("store: volume encryption keys are checked against volume.json before anything is written") {
  KeyFiles files;
  const std::string key_a = files.write("a.key", std::string(32, 'a'));
  const std::string key_b = files.write("b.key", std::string(32, 'b'));
  auto mem = std::make_shared<MemoryStore>();

  SUBCASE("a key file that is not 32 bytes is refused, naming it") {
    for (size_t size : {0, 31, 33, 64}) {
      const std::string bad = files.write("bad.key", std::string(size, 'k'));
      auto r = open_volume_store(mem, {bad, ""});
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().is(Status::Code::kInvalidArgument));
      CHECK(message(r.status()).find("exactly 32") != std::string::npos);
    }
    CHECK_FALSE(open_volume_store(mem, {files.dir.string() + "/missing", ""}).ok());
    CHECK_FALSE(open_volume_store(mem, {key_a, files.write("p", "x")}).ok());  // both
  }

  SUBCASE("key file: the right key opens, a wrong one, none and a passphrase are refused") {
    auto store = open_volume_store(mem, {key_a, ""});
    REQUIRE(store.ok());
    create_volume(**store);
    REQUIRE((*store)->put("segments/1.seg", bytes("secret")).ok());
    std::vector<ObjectInfo> before;
    REQUIRE(mem->list("", &before).ok());

    auto again = open_volume_store(mem, {key_a, ""});
    REQUIRE(again.ok());
    std::vector<std::byte> out;
    REQUIRE((*again)->get("segments/1.seg", &out).ok());
    CHECK(out == bytes("secret"));

    auto wrong = open_volume_store(mem, {key_b, ""});
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.status().is(Status::Code::kInvalidArgument));
    CHECK(message(wrong.status()).find("wrong encryption key") != std::string::npos);
    auto none = open_volume_store(mem, {});
    REQUIRE_FALSE(none.ok());
    CHECK(message(none.status()).find("is encrypted; pass --encryption-key-file") != std::string::npos);
    auto pass = open_volume_store(mem, {"", files.write("pass", "hunter2\n")});
    REQUIRE_FALSE(pass.ok());
    CHECK(message(pass.status()).find("key file") != std::string::npos);

    std::vector<ObjectInfo> after;
    REQUIRE(mem->list("", &after).ok());
    CHECK(after.size() == before.size());  // nothing written by a refusal
  }

  SUBCASE("passphrase: scrypt parameters in volume.json, the same passphrase opens, another is refused") {
    const std::string pass = files.write("pass", "correct horse battery staple\n");
    auto store = open_volume_store(mem, {"", pass});
    REQUIRE(store.ok());
    create_volume(**store);
    REQUIRE((*store)->put("segments/1.seg", bytes("secret")).ok());
    std::vector<std::byte> manifest;
    REQUIRE(mem->get("volume.json", &manifest).ok());
    const std::string text(reinterpret_cast<const char*>(manifest.data()), manifest.size());
    CHECK(text.find("\"scrypt\"") != std::string::npos);
    CHECK(text.find("\"key_check\"") != std::string::npos);
    CHECK(text.find("correct horse") == std::string::npos);

    auto same = open_volume_store(mem, {"", files.write("pass2", "correct horse battery staple")});
    REQUIRE(same.ok());
    std::vector<std::byte> out;
    REQUIRE((*same)->get("segments/1.seg", &out).ok());
    CHECK(out == bytes("secret"));
    auto other = open_volume_store(mem, {"", files.write("pass3", "correct horse battery stapler")});
    REQUIRE_FALSE(other.ok());
    CHECK(message(other.status()).find("wrong encryption key") != std::string::npos);
    CHECK_FALSE(open_volume_store(mem, {"", files.write("empty", "\n")}).ok());
  }

  SUBCASE("a key on a plain volume is refused; a plain volume without one opens unwrapped") {
    create_volume(*mem);
    auto keyed = open_volume_store(mem, {key_a, ""});
    REQUIRE_FALSE(keyed.ok());
    CHECK(message(keyed.status()).find("is not encrypted") != std::string::npos);
    auto plain = open_volume_store(mem, {});
    REQUIRE(plain.ok());
    CHECK(plain->get() == mem.get());
  }

  SUBCASE("one key file on two volumes gives two data keys: an object moved between them fails") {
    auto other_mem = std::make_shared<MemoryStore>();
    auto one = open_volume_store(mem, {key_a, ""});
    auto two = open_volume_store(other_mem, {key_a, ""});
    REQUIRE(one.ok());
    REQUIRE(two.ok());
    REQUIRE((*one)->put("segments/1.seg", bytes("secret")).ok());
    std::vector<std::byte> raw;
    REQUIRE(mem->get("segments/1.seg", &raw).ok());
    REQUIRE(other_mem->put("segments/1.seg", raw).ok());
    std::vector<std::byte> out;
    CHECK(names((*two)->get("segments/1.seg", &out), "segments/1.seg"));
  }
}
