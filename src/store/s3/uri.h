// Percent-encoding as SigV4 and S3 define it (RFC 3986 unreserved set).
//
// S3 object keys are arbitrary UTF-8; on the wire each byte outside
// A-Z a-z 0-9 - . _ ~ becomes %XX (uppercase hex). In a path the '/'
// separators stay, so "a b/c+d" is sent as "a%20b/c%2Bd". '+' is always
// encoded: S3 would otherwise read it as a space in some contexts.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portalbd::s3 {

// Encodes every byte except the unreserved ones; '/' too unless keep_slash.
std::string uri_encode(std::string_view s, bool keep_slash = false);
// Encodes an object key for the URL path: each segment encoded, '/' kept.
inline std::string uri_encode_path(std::string_view s) { return uri_encode(s, true); }
// Decodes %XX sequences; malformed ones are kept literally.
std::string uri_decode(std::string_view s);

// A query as name/value pairs, in the order given (values not encoded).
using QueryParams = std::vector<std::pair<std::string, std::string>>;
// "a=1&b=" with each name and value encoded; names without '=' never occur
// (an empty value is written "name=", as SigV4 canonical form requires).
std::string encode_query(const QueryParams& params);

}  // namespace portalbd::s3
