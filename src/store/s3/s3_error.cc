#include "src/store/s3/s3_error.h"

#include "src/store/s3/retry_policy.h"
#include "src/store/s3/xml.h"

namespace portalbd::s3 {

S3ErrorInfo parse_s3_error(const HttpResponse& response) {
  S3ErrorInfo info;
  info.request_id = response.header("x-amz-request-id");
  if (response.body.empty()) return info;
  auto doc = parse_xml(response.body_text());
  if (!doc.ok() || doc->name != "Error") return info;
  info.code = doc->child_text("Code");
  info.message = doc->child_text("Message");
  if (info.request_id.empty()) info.request_id = doc->child_text("RequestId");
  return info;
}

Status s3_status(const std::string& op, const std::string& bucket, const std::string& key,
                 const HttpResponse& response) {
  S3ErrorInfo err = parse_s3_error(response);
  long st = response.status;
  std::string code = err.code;
  if (code.empty()) {
    // HEAD answers carry no body; name the status the way S3 would.
    if (st == 404)
      code = key.empty() ? "NoSuchBucket" : "NotFound";
    else if (st == 403)
      code = "Forbidden";
    else if (st == 412)
      code = "PreconditionFailed";
    else
      code = "HTTP" + std::to_string(st);
  }
  std::string what = "S3 " + op + " bucket=" + bucket + (key.empty() ? "" : " key=" + key) + ": HTTP " +
                     std::to_string(st) + " " + code + (err.message.empty() ? "" : " (" + err.message + ")") +
                     (err.request_id.empty() ? "" : " request_id=" + err.request_id);
  if (st == 404 && code == "NoSuchBucket") {
    return Status::InvalidArgument(what + ": the bucket does not exist at this endpoint");
  }
  if (st == 404 || code == "NoSuchKey" || code == "NoSuchUpload") return Status::NotFound(what);
  if (st == 403) {
    return Status::InvalidArgument(what + ": check the credentials, their permissions on the bucket, and the region");
  }
  if (st == 412) return Status::AlreadyExists(what);
  if (st == 501) return Status::NotSupported(what);
  if (retryable_http(st, code)) return Status::Unavailable(what);
  std::string region = response.header("x-amz-bucket-region");
  if (st == 301 || st == 307 || code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect") {
    return Status::InvalidArgument(what + ": wrong region or endpoint for this bucket" +
                                   (region.empty() ? std::string() : " (the bucket is in " + region + ")"));
  }
  // Other 4xx cannot succeed by retrying: the request itself is wrong.
  if (st >= 400 && st < 500) return Status::InvalidArgument(what);
  return Status::IOError(what);
}

}  // namespace portalbd::s3
