// Tests for FileStore: its file modes (objects are the volume's bytes and must
// not be readable by other users, whatever umask the process has) and its
// cached reads.
#include "src/store/file_store.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <vector>

#include "src/util/fd.h"
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
  TEST_CASE("cached reads give what get_range gives from cached pages, and decline pages not cached") {
    testing::TempDir tmp;
    auto store = FileStore::Open(tmp.path + "/data");
    REQUIRE(store.ok());
    std::vector<std::byte> bytes(1 << 20);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::byte(static_cast<uint8_t>(i * 31 + i / 4096));
    REQUIRE((*store)->put("segments/1", bytes).ok());
    // Just written: every page is in the page cache.
    for (uint64_t off : {uint64_t{0}, uint64_t{4095}, uint64_t{65536}, uint64_t{(1 << 20) - 10}, uint64_t{1 << 20},
                         uint64_t{5 << 20}}) {
      for (uint64_t len : {uint64_t{0}, uint64_t{1}, uint64_t{70000}, uint64_t{2 << 20}}) {
        CAPTURE(off);
        CAPTURE(len);
        std::vector<std::byte> want, got(len, std::byte{0xee});
        REQUIRE((*store)->get_range("segments/1", off, len, &want).ok());
        auto n = (*store)->get_range_cached("segments/1", off, got);
        REQUIRE(n.ok());
        got.resize(*n);  // short only where the object ends
        CHECK(got == want);
      }
    }
    std::vector<std::byte> out(10);
    CHECK((*store)->get_range_cached("segments/2", 0, out).status().is(Status::Code::kUnavailable));
    // Pages dropped from the cache: declined, and get_range still reads them.
    const std::string path = tmp.path + "/data/segments/1";
    {
      UniqueFd fd(::open(path.c_str(), O_RDONLY));
      REQUIRE(fd);
      REQUIRE(::fdatasync(fd.get()) == 0);
      REQUIRE(::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED) == 0);
      void* map = ::mmap(nullptr, bytes.size(), PROT_READ, MAP_SHARED, fd.get(), 0);
      REQUIRE(map != MAP_FAILED);
      std::vector<unsigned char> resident(bytes.size() / 4096);
      REQUIRE(::mincore(map, bytes.size(), resident.data()) == 0);
      ::munmap(map, bytes.size());
      if (resident[100] & 1) {
        MESSAGE("NOT CHECKED: the kernel kept the dropped pages cached, so the decline cannot be seen here");
        return;
      }
    }
    out.resize(4096);
    CHECK((*store)->get_range_cached("segments/1", 100 * 4096, out).status().is(Status::Code::kUnavailable));
    REQUIRE((*store)->get_range("segments/1", 100 * 4096, 4096, &out).ok());
    CHECK(std::equal(out.begin(), out.end(), bytes.begin() + 100 * 4096));
  }

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
