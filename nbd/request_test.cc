// Unit tests for request validation (nbd/request.h) and error mapping
// (nbd/errors.h): every rule of the table in request.h, without sockets.
#include "nbd/request.h"

#include <doctest/doctest.h>

#include <limits>

#include "nbd/errors.h"
#include "nbd/protocol.h"
#include "nbd/testing/memory_device.h"
#include "nbd/wire.h"

namespace portalbd::nbd {
namespace {

using namespace proto;

Session make_session(bool read_only = false, bool structured = false, bool base_allocation = false) {
  Session s;
  s.device = std::make_shared<testing::MemoryDevice>(1 << 20, read_only);
  s.size_bytes = 1 << 20;
  s.structured_replies = structured;
  s.base_allocation = base_allocation;
  s.max_request_bytes = 64 * 1024;
  return s;
}

Request req(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0) {
  return Request{flags, type, 42, offset, length};
}

}  // namespace

TEST_SUITE("nbd.request") {
  TEST_CASE("parse_request decodes fields and rejects a bad magic") {
    WireWriter w;
    w.u32(kRequestMagic).u16(kCmdFlagFua).u16(kCmdWrite).u64(0x1122334455667788ull).u64(4096).u32(512);
    Request r;
    REQUIRE(parse_request(std::span<const std::byte, 28>(w.data().data(), 28), &r));
    CHECK(r.flags == kCmdFlagFua);
    CHECK(r.type == kCmdWrite);
    CHECK(r.cookie == 0x1122334455667788ull);
    CHECK(r.offset == 4096);
    CHECK(r.length == 512);
    store_be32(w.data().data(), 0xdeadbeef);
    CHECK_FALSE(parse_request(std::span<const std::byte, 28>(w.data().data(), 28), &r));
  }

  TEST_CASE("valid requests pass") {
    Session s = make_session();
    CHECK(validate_request(req(kCmdRead, 0, 4096), s) == 0);
    CHECK(validate_request(req(kCmdWrite, (1 << 20) - 512, 512, kCmdFlagFua), s) == 0);
    CHECK(validate_request(req(kCmdFlush, 0, 0), s) == 0);
    CHECK(validate_request(req(kCmdTrim, 0, 1 << 20), s) == 0);
    CHECK(validate_request(req(kCmdWriteZeroes, 0, 1 << 20, kCmdFlagNoHole | kCmdFlagFastZero), s) == 0);
    CHECK(validate_request(req(kCmdCache, 0, 1 << 20), s) == 0);
    CHECK(validate_request(req(kCmdDisc, 0, 0), s) == 0);
    // FUA is accepted on every command once advertised.
    CHECK(validate_request(req(kCmdRead, 0, 512, kCmdFlagFua), s) == 0);
  }

  TEST_CASE("unknown command and unknown or misplaced flags are EINVAL") {
    Session s = make_session();
    CHECK(validate_request(req(99, 0, 512), s) == kEinval);
    CHECK(validate_request(req(8, 0, 512), s) == kEinval);  // RESIZE: not offered
    CHECK(validate_request(req(kCmdRead, 0, 512, 1u << 9), s) == kEinval);
    CHECK(validate_request(req(kCmdWrite, 0, 512, kCmdFlagNoHole), s) == kEinval);
    CHECK(validate_request(req(kCmdRead, 0, 512, kCmdFlagReqOne), s) == kEinval);
    CHECK(validate_request(req(kCmdTrim, 0, 512, kCmdFlagFastZero), s) == kEinval);
    // DF needs structured replies.
    CHECK(validate_request(req(kCmdRead, 0, 512, kCmdFlagDf), s) == kEinval);
    CHECK(validate_request(req(kCmdRead, 0, 512, kCmdFlagDf), make_session(false, true)) == 0);
  }

  TEST_CASE("zero length is EINVAL except for FLUSH and DISC") {
    Session s = make_session();
    for (uint16_t t : {kCmdRead, kCmdWrite, kCmdTrim, kCmdWriteZeroes, kCmdCache}) {
      CAPTURE(t);
      CHECK(validate_request(req(t, 0, 0), s) == kEinval);
    }
    CHECK(validate_request(req(kCmdBlockStatus, 0, 0), make_session(false, true, true)) == kEinval);
    CHECK(validate_request(req(kCmdFlush, 0, 0), s) == 0);
    CHECK(validate_request(req(kCmdFlush, 0, 512), s) == kEinval);
    CHECK(validate_request(req(kCmdFlush, 512, 0), s) == kEinval);
  }

  TEST_CASE("past the end: ENOSPC for writes, EINVAL otherwise, overflow included") {
    Session s = make_session();
    const uint64_t end = 1 << 20;
    CHECK(validate_request(req(kCmdWrite, end - 511, 512), s) == kEnospc);
    CHECK(validate_request(req(kCmdWriteZeroes, end, 1), s) == kEnospc);
    CHECK(validate_request(req(kCmdRead, end - 511, 512), s) == kEinval);
    CHECK(validate_request(req(kCmdTrim, end, 1), s) == kEinval);
    CHECK(validate_request(req(kCmdCache, end + 1, 1), s) == kEinval);
    const uint64_t huge = std::numeric_limits<uint64_t>::max() - 10;
    CHECK(validate_request(req(kCmdRead, huge, 512), s) == kEinval);
    CHECK(validate_request(req(kCmdWrite, huge, 512), s) == kEnospc);
    CHECK(validate_request(req(kCmdBlockStatus, end - 1, 2), make_session(false, true, true)) == kEinval);
  }

  TEST_CASE("READ/WRITE above max_request_bytes are EINVAL; TRIM/ZERO are not limited") {
    Session s = make_session();
    CHECK(validate_request(req(kCmdRead, 0, 64 * 1024 + 1), s) == kEinval);
    CHECK(validate_request(req(kCmdWrite, 0, 64 * 1024 + 1), s) == kEinval);
    CHECK(validate_request(req(kCmdRead, 0, 64 * 1024), s) == 0);
    CHECK(validate_request(req(kCmdTrim, 0, 128 * 1024), s) == 0);
    CHECK(validate_request(req(kCmdWriteZeroes, 0, 128 * 1024), s) == 0);
  }

  TEST_CASE("read-only exports refuse writes with EPERM and still read") {
    Session s = make_session(/*read_only=*/true);
    CHECK(validate_request(req(kCmdWrite, 0, 512), s) == kEperm);
    CHECK(validate_request(req(kCmdTrim, 0, 512), s) == kEperm);
    CHECK(validate_request(req(kCmdWriteZeroes, 0, 512), s) == kEperm);
    CHECK(validate_request(req(kCmdRead, 0, 512), s) == 0);
    CHECK(validate_request(req(kCmdFlush, 0, 0), s) == 0);
  }

  TEST_CASE("read-only exports do not take FUA, which they do not advertise") {
    Session s = make_session(/*read_only=*/true);
    CHECK(validate_request(req(kCmdRead, 0, 512, kCmdFlagFua), s) == kEinval);
    CHECK(validate_request(req(kCmdFlush, 0, 0, kCmdFlagFua), s) == kEinval);
    CHECK(validate_request(req(kCmdRead, 0, 512, kCmdFlagFua), make_session()) == 0);
  }

  TEST_CASE("BLOCK_STATUS needs a selected metadata context") {
    CHECK(validate_request(req(kCmdBlockStatus, 0, 512), make_session(false, true, false)) == kEinval);
    CHECK(validate_request(req(kCmdBlockStatus, 0, 512, kCmdFlagReqOne), make_session(false, true, true)) == 0);
  }

  TEST_CASE("has_payload is true for WRITE only") {
    CHECK(has_payload(req(kCmdWrite, 0, 1)));
    CHECK_FALSE(has_payload(req(kCmdRead, 0, 1)));
    CHECK_FALSE(has_payload(req(kCmdWriteZeroes, 0, 1)));
  }
}

TEST_SUITE("nbd.errors") {
  TEST_CASE("Status codes map to the NBD errno table") {
    CHECK(nbd_error_for(Status::OK()) == 0);
    CHECK(nbd_error_for(Status::InvalidArgument("x")) == kEinval);
    CHECK(nbd_error_for(Status::OutOfRange("x")) == kEinval);
    CHECK(nbd_error_for(Status::NoSpace("x")) == kEnospc);
    CHECK(nbd_error_for(Status::ReadOnly("x")) == kEperm);
    CHECK(nbd_error_for(Status::NotSupported("x")) == kEnotsup);
    CHECK(nbd_error_for(Status::Cancelled("x")) == kEshutdown);
    CHECK(nbd_error_for(Status::IOError("x")) == kEio);
    CHECK(nbd_error_for(Status::Corruption("x")) == kEio);
    CHECK(nbd_error_for(Status::Unavailable("x")) == kEio);
    CHECK(nbd_error_for(Status::Fenced("x")) == kEio);
    CHECK(nbd_error_for(Status::NotFound("x")) == kEio);
    CHECK(std::string(nbd_error_name(kEnospc)) == "ENOSPC");
  }
}

}  // namespace portalbd::nbd
