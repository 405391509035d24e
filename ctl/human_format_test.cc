// Tests for the human formatting helpers used by portalctl.
#include "ctl/human_format.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "ctl/exit_codes.h"
#include "ctl/value_format.h"

namespace portalbd::ctl {

TEST_SUITE("ctl.format") {
  TEST_CASE("format_bytes") {
    CHECK(format_bytes(0) == "0 B");
    CHECK(format_bytes(1023) == "1023 B");
    CHECK(format_bytes(1536) == "1.5 KiB");
    CHECK(format_bytes(64ull << 20) == "64 MiB");
    CHECK(format_bytes(1ull << 30) == "1 GiB");
    CHECK(format_bytes(1ull << 60) == "1 EiB");
    CHECK(format_bytes(UINT64_MAX) == "15.9 EiB");
    CHECK(format_bytes_exact(1ull << 30) == "1 GiB (1073741824 bytes)");
    CHECK(format_bytes_exact(12) == "12 B");
  }

  TEST_CASE("durations") {
    CHECK(format_duration_s(0) == "0s");
    CHECK(format_duration_s(42) == "42s");
    CHECK(format_duration_s(3725) == "1h 2m");
    CHECK(format_duration_s(3600) == "1h");
    CHECK(format_duration_s(90061) == "1d 1h");
  }

  TEST_CASE("times and counts") {
    CHECK(format_unix_time(0) == "1970-01-01 00:00:00 UTC");
    CHECK(format_unix_time(1767755083) == "2026-01-07 03:04:43 UTC");
    CHECK(format_count(0) == "0");
    CHECK(format_count(999) == "999");
    CHECK(format_count(1234567) == "1,234,567");
  }

  TEST_CASE("values by key name") {
    using nlohmann::json;
    CHECK(label_for_key("uptime_s") == "uptime");
    CHECK(label_for_key("read_bytes") == "read bytes");
    CHECK(label_for_key("created_at") == "created");
    CHECK(format_value("size_bytes", json(2048)) == "2 KiB (2048 bytes)");
    CHECK(format_value("bytes_stored", json(0)) == "0 B");
    CHECK(format_value("uptime_s", json(61)) == "1m 1s");
    CHECK(format_value("latency_ms", json(1500)) == "1,500 ms");
    CHECK(format_value("x", json("")) == "-");
    CHECK(format_value("x", json(true)) == "yes");
    CHECK(format_value("x", json::array({"a", "b"})) == "a, b");
    CHECK(format_value("x", json{{"k", 1}}) == "{\"k\":1}");
    CHECK(format_value("x", json(-3)) == "-3");
  }

  TEST_CASE("exit codes") {
    CHECK(exit_code_for(Status::OK(), CallFailure::kNone) == kExitOk);
    CHECK(exit_code_for(Status::Unavailable("x"), CallFailure::kUnreachable) == kExitUnreachable);
    CHECK(exit_code_for(Status::Unavailable("x"), CallFailure::kTimeout) == kExitFailed);
    // A daemon reporting its storage as unavailable is not "daemon unreachable".
    CHECK(exit_code_for(Status::Unavailable("s3 down"), CallFailure::kDaemon) == kExitFailed);
    CHECK(exit_code_for(Status::NotFound("x"), CallFailure::kDaemon) == kExitNotFound);
    CHECK(exit_code_for(Status::AlreadyExists("x"), CallFailure::kDaemon) == kExitAlreadyExists);
    CHECK(exit_code_for(Status::InvalidArgument("x"), CallFailure::kDaemon) == kExitUsage);
    CHECK(exit_code_for(Status::Corruption("x"), CallFailure::kProtocol) == kExitFailed);
  }
}

}  // namespace portalbd::ctl
