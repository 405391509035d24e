// Turns an S3 HTTP answer into a Status that names bucket, key and S3 code.
//
//   404 NoSuchKey (or a HEAD 404)  -> kNotFound
//   404 NoSuchBucket               -> kInvalidArgument: the configuration is wrong,
//                                     and reading it as "object missing" could make
//                                     a volume look empty
//   403 (AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId ...)
//                                  -> kInvalidArgument, with a hint at credentials
//   412 PreconditionFailed         -> kAlreadyExists (conditional PUT lost)
//   501 NotImplemented             -> kNotSupported
//   retryable ones (retry_policy.h) -> kUnavailable
//   301/307, wrong region          -> kInvalidArgument naming the bucket's region
//   any other 4xx                  -> kInvalidArgument (retrying cannot help)
//   anything else                  -> kIOError
//
// Pure functions; thread-safe.
#pragma once

#include <string>

#include "src/store/s3/http_client.h"

namespace portalbd::s3 {

struct S3ErrorInfo {
  std::string code;     // "NoSuchKey"; "" when the body had no <Error>
  std::string message;  // S3's human message
  std::string request_id;
};

// Reads <Error><Code/><Message/><RequestId/></Error> from a response body.
S3ErrorInfo parse_s3_error(const HttpResponse& response);

// `op` is "GET", "PUT" ...; `key` the full object key ("" for bucket requests).
Status s3_status(const std::string& op, const std::string& bucket, const std::string& key,
                 const HttpResponse& response);

}  // namespace portalbd::s3
