#include "src/store/s3/retry_policy.h"

#include <doctest/doctest.h>

#include "src/store/s3/s3_error.h"

using namespace portalbd;
using namespace portalbd::s3;

namespace {

HttpResponse answer(long status, const std::string& body = "") {
  HttpResponse r;
  r.status = status;
  r.body.assign(reinterpret_cast<const std::byte*>(body.data()),
                reinterpret_cast<const std::byte*>(body.data()) + body.size());
  return r;
}

std::string error_body(const std::string& code) {
  return "<?xml version=\"1.0\"?><Error><Code>" + code + "</Code><Message>m</Message><RequestId>R1</RequestId></Error>";
}

}  // namespace

TEST_SUITE("s3.retry") {
  TEST_CASE("backoff grows exponentially, is capped, and jitters within the cap") {
    RetryPolicy p{8, 100, 2000};
    CHECK(p.backoff_cap_ms(1) == 100);
    CHECK(p.backoff_cap_ms(2) == 200);
    CHECK(p.backoff_cap_ms(4) == 800);
    CHECK(p.backoff_cap_ms(6) == 2000);
    CHECK(p.backoff_cap_ms(60) == 2000);  // no overflow
    bool varied = false;
    uint32_t first = p.backoff_ms(5);
    for (int i = 0; i < 200; ++i) {
      uint32_t w = p.backoff_ms(5);
      CHECK(w <= 1600);
      varied = varied || w != first;
    }
    CHECK(varied);
  }

  TEST_CASE("what is retried") {
    CHECK(retryable_http(500, "InternalError"));
    CHECK(retryable_http(503, "SlowDown"));
    CHECK(retryable_http(502, ""));
    CHECK(retryable_http(429, ""));
    CHECK(retryable_http(400, "RequestTimeout"));
    CHECK(retryable_http(409, "ConditionalRequestConflict"));
    CHECK_FALSE(retryable_http(501, "NotImplemented"));
    CHECK_FALSE(retryable_http(403, "AccessDenied"));
    CHECK_FALSE(retryable_http(404, "NoSuchKey"));
    CHECK_FALSE(retryable_http(400, "InvalidArgument"));
    CHECK_FALSE(retryable_http(412, "PreconditionFailed"));
  }

  TEST_CASE("S3 answers map to statuses naming bucket, key and code") {
    Status missing = s3_status("GetObject", "bkt", "p/k", answer(404, error_body("NoSuchKey")));
    CHECK(missing.is(Status::Code::kNotFound));
    CHECK(missing.message().find("bucket=bkt key=p/k") != std::string::npos);
    CHECK(missing.message().find("NoSuchKey") != std::string::npos);
    CHECK(missing.message().find("request_id=R1") != std::string::npos);

    Status nobucket = s3_status("GetObject", "bkt", "p/k", answer(404, error_body("NoSuchBucket")));
    CHECK(nobucket.is(Status::Code::kInvalidArgument));  // never "object missing": the volume would look empty
    CHECK_FALSE(nobucket.retryable());

    Status denied = s3_status("PutObject", "bkt", "k", answer(403, error_body("SignatureDoesNotMatch")));
    CHECK(denied.is(Status::Code::kInvalidArgument));
    CHECK(denied.message().find("SignatureDoesNotMatch") != std::string::npos);

    CHECK(s3_status("HeadObject", "bkt", "k", answer(404)).is(Status::Code::kNotFound));
    CHECK(s3_status("HeadObject", "bkt", "k", answer(403)).message().find("Forbidden") != std::string::npos);
    CHECK(s3_status("PutObject", "bkt", "k", answer(412, error_body("PreconditionFailed")))
              .is(Status::Code::kAlreadyExists));
    CHECK(
        s3_status("PutObject", "bkt", "k", answer(501, error_body("NotImplemented"))).is(Status::Code::kNotSupported));
    Status slow = s3_status("PutObject", "bkt", "k", answer(503, error_body("SlowDown")));
    CHECK(slow.is(Status::Code::kUnavailable));
    CHECK(slow.retryable());
    CHECK(s3_status("PutObject", "bkt", "k", answer(400, error_body("EntityTooSmall")))
              .is(Status::Code::kInvalidArgument));
    HttpResponse moved = answer(301, error_body("PermanentRedirect"));
    moved.headers.push_back({"x-amz-bucket-region", "eu-central-1"});
    Status wrong_region = s3_status("GetObject", "bkt", "k", moved);
    CHECK(wrong_region.is(Status::Code::kInvalidArgument));
    CHECK(wrong_region.message().find("eu-central-1") != std::string::npos);
    CHECK(s3_status("GetObject", "bkt", "k", answer(500, "not xml")).is(Status::Code::kUnavailable));
  }
}
