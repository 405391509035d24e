// Tests for FileStore's file modes: objects are the volume's bytes and must
// not be readable by other users, whatever umask the process has.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstddef>
#include <filesystem>
#include <vector>

#include "src/store/file_store.h"
#include "tests/unit/temp_dir.h"

namespace portalbd {
namespace {

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// Sets the umask for one scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

}  // namespace

TEST_SUITE("store.file") {
  TEST_CASE("objects are 0600 and the directories it makes 0700 under umask 000") {
    testing::TempDir tmp;
    ScopedUmask umask_000(0);
    auto store = FileStore::Open(tmp.path + "/root/data");
    REQUIRE(store.ok());
    const std::vector<std::byte> bytes(100, std::byte{7});
    REQUIRE((*store)->put("segments/00/seg-1", bytes).ok());
    REQUIRE((*store)->put_if_absent("lock/writer.json", bytes).ok());
    CHECK(mode_of(tmp.path + "/root") == 0700);
    CHECK(mode_of(tmp.path + "/root/data") == 0700);
    CHECK(mode_of(tmp.path + "/root/data/segments") == 0700);
    CHECK(mode_of(tmp.path + "/root/data/segments/00") == 0700);
    CHECK(mode_of(tmp.path + "/root/data/segments/00/seg-1") == 0600);
    CHECK(mode_of(tmp.path + "/root/data/lock/writer.json") == 0600);
  }

  TEST_CASE("an existing root keeps its mode") {
    testing::TempDir tmp;
    const std::string root = tmp.path + "/shared";
    REQUIRE(std::filesystem::create_directory(root));
    REQUIRE(::chmod(root.c_str(), 0750) == 0);
    auto store = FileStore::Open(root);
    REQUIRE(store.ok());
    CHECK(mode_of(root) == 0750);
  }

  TEST_CASE("a file where a directory belongs is an error naming it") {
    testing::TempDir tmp;
    auto store = FileStore::Open(tmp.path);
    REQUIRE(store.ok());
    const std::vector<std::byte> bytes(1, std::byte{1});
    REQUIRE((*store)->put("a", bytes).ok());
    Status st = (*store)->put("a/b", bytes);
    CHECK_FALSE(st.ok());
    CHECK(st.message().find(tmp.path + "/a exists and is not a directory") != std::string::npos);
  }
}

}  // namespace portalbd
