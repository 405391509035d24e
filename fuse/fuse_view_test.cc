// Unit tests for the pure parts of the FUSE view: snapshot catalog
// bookkeeping, SEEK_DATA/SEEK_HOLE over extents, mountinfo parsing and
// endpoint parsing. The mounted view is tested by tests/integration/test_fuse_*.sh.
#include <doctest/doctest.h>

#include "fuse/mountpoint.h"
#include "fuse/nbd_endpoint.h"
#include "fuse/seek_data.h"
#include "fuse/snapshot_catalog.h"

namespace portalbd::fuse {
namespace {

ExportListing listing(std::vector<ExportEntry> snapshots) {
  ExportListing l;
  l.live_export = "portalbd";
  l.size_bytes = 1 << 30;
  l.exports.push_back({"portalbd", "portalbd live volume (memory://)"});
  for (auto& s : snapshots) l.exports.push_back(s);
  return l;
}

ExportEntry snap(const std::string& name, const std::string& when) {
  return {"portalbd@" + name, "read-only snapshot '" + name + "' taken " + when};
}

// Extents of a 100-byte image: data [0,10), hole [10,50), data [50,60), hole [60,100).
Status fake_extents(uint64_t offset, uint64_t /*count*/, std::vector<Extent>* out) {
  const std::vector<std::pair<uint64_t, bool>> map{{10, false}, {40, true}, {10, false}, {40, true}};
  uint64_t start = 0;
  for (auto [len, hole] : map) {
    if (offset < start + len) {
      out->push_back({start + len - offset, hole});
      offset = start + len;
    }
    start += len;
  }
  return Status::OK();
}

}  // namespace

TEST_SUITE("fuse catalog") {
  TEST_CASE("parse_taken_time reads the daemon's description") {
    CHECK(parse_taken_time("read-only snapshot 'a' taken 2026-01-02T03:04:05Z") == 1767323045);
    CHECK(parse_taken_time("portalbd live volume") == 0);
    CHECK(parse_taken_time("read-only snapshot 'a' taken yesterday") == 0);
  }

  TEST_CASE("snapshots_in keeps only <live>@<name> exports usable as file names") {
    auto l = listing({snap("nightly", "2026-01-02T03:04:05Z"),
                      snap("a/b", "2026-01-02T03:04:05Z"),
                      {"other@x", "read-only snapshot 'x' taken 2026-01-02T03:04:05Z"}});
    auto s = snapshots_in(l);
    REQUIRE(s.size() == 1);
    CHECK(s[0].name == "nightly");
    CHECK(s[0].export_name == "portalbd@nightly");
    CHECK(s[0].created_unix_s == 1767323045);
  }

  TEST_CASE("inodes are stable, deleted snapshots stay findable by inode, a recreated name is a new file") {
    SnapshotCatalog c(NbdEndpoint::unix_socket("/nonexistent"), "portalbd", 16, std::chrono::hours(1),
                      std::chrono::milliseconds(100));
    c.apply(listing({snap("a", "2026-01-02T03:04:05Z"), snap("b", "2026-01-02T03:04:06Z")}), 1);
    auto a = c.find_ino(16);
    REQUIRE(a);
    CHECK(a->name == "a");
    c.apply(listing({snap("b", "2026-01-02T03:04:06Z")}), 2);
    CHECK(c.list().size() == 1);
    CHECK_FALSE(c.find_name("a"));
    CHECK(c.find_ino(16));  // an open file of "a" still has attributes
    CHECK(c.find_name("b")->ino == 17);
    c.apply(listing({snap("a", "2026-01-03T00:00:00Z"), snap("b", "2026-01-02T03:04:06Z")}), 3);
    CHECK(c.find_name("a")->ino == 18);
    CHECK(c.find_name("b")->ino == 17);
    CHECK(c.device_size() == (1u << 30));
    CHECK(c.health().reachable);
  }

  TEST_CASE("a failed refresh keeps the last list and reports the server unreachable") {
    SnapshotCatalog c(NbdEndpoint::unix_socket("/nonexistent/nbd.sock"), "portalbd", 16, std::chrono::milliseconds(0),
                      std::chrono::milliseconds(200));
    c.apply(listing({snap("a", "2026-01-02T03:04:05Z")}), 1);
    CHECK(c.list().size() == 1);
    CHECK_FALSE(c.health().reachable);
    CHECK_FALSE(c.health().last_error.empty());
    CHECK_FALSE(c.prime().ok());
  }
}

TEST_SUITE("fuse seek") {
  TEST_CASE("SEEK_DATA and SEEK_HOLE follow the extents") {
    CHECK(*seek_data_or_hole(100, 0, true, fake_extents) == 0);
    CHECK(*seek_data_or_hole(100, 0, false, fake_extents) == 10);
    CHECK(*seek_data_or_hole(100, 10, true, fake_extents) == 50);
    CHECK(*seek_data_or_hole(100, 55, false, fake_extents) == 60);
    CHECK(*seek_data_or_hole(100, 70, false, fake_extents) == 70);
    CHECK(seek_data_or_hole(100, 60, true, fake_extents).status().is(Status::Code::kOutOfRange));
    CHECK(seek_data_or_hole(100, 100, false, fake_extents).status().is(Status::Code::kOutOfRange));
  }

  TEST_CASE("an image without holes has its only hole at the end") {
    auto all_data = [](uint64_t offset, uint64_t count, std::vector<Extent>* out) {
      out->push_back({count, false});
      (void)offset;
      return Status::OK();
    };
    CHECK(*seek_data_or_hole(uint64_t{3} << 30, 5, false, all_data) == (uint64_t{3} << 30));
  }

  TEST_CASE("an empty extent is an error, not an endless loop") {
    auto broken = [](uint64_t, uint64_t, std::vector<Extent>* out) {
      out->push_back({0, true});
      return Status::OK();
    };
    CHECK_FALSE(seek_data_or_hole(100, 0, true, broken).ok());
  }
}

TEST_SUITE("fuse mountpoint") {
  TEST_CASE("fstype_at finds the last mount on an escaped path") {
    const std::string mi =
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
        "40 22 0:50 / /mnt/my\\040view rw - tmpfs tmpfs rw\n"
        "41 40 0:51 / /mnt/my\\040view rw,nosuid shared:1 - fuse.portalbd portalbd rw\n";
    CHECK(fstype_at(mi, "/mnt/my view") == std::optional<std::string>("fuse.portalbd"));
    CHECK(fstype_at(mi, "/proc") == std::optional<std::string>("proc"));
    CHECK_FALSE(fstype_at(mi, "/mnt"));
  }

  TEST_CASE("check_mountpoint names the problem") {
    CHECK(check_mountpoint("/nonexistent/dir").status().is(Status::Code::kNotFound));
    CHECK(check_mountpoint("/etc/hostname").status().is(Status::Code::kInvalidArgument));
    CHECK(check_mountpoint("/proc").status().is(Status::Code::kBusy));
  }

  TEST_CASE("NbdEndpoint parses HOST:PORT") {
    CHECK(NbdEndpoint::parse_tcp("127.0.0.1:10809")->describe() == "127.0.0.1:10809");
    CHECK(NbdEndpoint::parse_tcp("nbd.example")->port == "10809");
    CHECK(NbdEndpoint::parse_tcp("[::1]:123")->host == "::1");
    CHECK_FALSE(NbdEndpoint::parse_tcp(":123").ok());
    CHECK_FALSE(NbdEndpoint::parse_tcp("h:12x").ok());
    CHECK(NbdEndpoint::unix_socket("/run/x.sock").describe() == "unix:/run/x.sock");
  }
}

}  // namespace portalbd::fuse
