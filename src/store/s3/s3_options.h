// S3Options: everything an S3Store needs to know, and how it is read from a
// storage URL plus the environment.
//
// The daemon fills S3Options from its TOML config ([storage] endpoint, region,
// addressing, credentials_file, retry and concurrency keys) and calls
// S3Store::Open(options); until it does, open_object_store("s3://...") uses
// s3_options_from_url(), which reads the environment the AWS CLI reads:
//
//   s3://bucket/prefix[?endpoint=URL&region=R&addressing=path|virtual&profile=P]
//   AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL     endpoint (default: AWS for the region)
//   AWS_REGION, AWS_DEFAULT_REGION            region (default us-east-1)
//   AWS_CONFIG_FILE (default ~/.aws/config)   region and endpoint_url of the active
//                                             profile ([default] or [profile NAME]),
//                                             used when nothing above set them
//   AWS_S3_ADDRESSING_STYLE=path|virtual|auto addressing (default auto, see Addressing)
//   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//   AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials), AWS_PROFILE (default "default")
//   PORTALBD_S3_MAX_ATTEMPTS                  retry bound (default 8)
//   PORTALBD_S3_CONNECT_TIMEOUT_MS, PORTALBD_S3_STALL_TIMEOUT_MS,
//   PORTALBD_S3_REQUEST_TIMEOUT_MS, PORTALBD_S3_OPERATION_TIMEOUT_MS
//                                             deadlines (below; the daemon's
//                                             [storage] *_timeout_ms keys)
//
// URL query values win over the environment, which wins over the config file.
// Credentials: explicit options, then the environment, then the shared
// credentials file.
//
// Values; thread-safe to copy. The secret key is held here and nowhere else
// long-lived; never log an S3Options (use describe()).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "src/store/s3/sigv4.h"
#include "src/util/status.h"

namespace portalbd::s3 {

// Path style: http://host/bucket/key. Virtual-hosted: http://bucket.host/key.
// kAuto picks virtual-hosted for AWS endpoints and path style for custom
// endpoints (MinIO, s3rver, Ceph), IP addresses, localhost, and bucket names
// with dots over https (their certificate would not match).
enum class Addressing { kAuto, kPath, kVirtual };

struct S3Options {
  // Where.
  std::string bucket;
  std::string prefix;    // without leading or trailing '/'; "" = bucket root
  std::string endpoint;  // "http://127.0.0.1:4568"; "" = https://s3.<region>.amazonaws.com
  std::string region = "us-east-1";
  Addressing addressing = Addressing::kAuto;

  // Who.
  Credentials credentials;       // empty = look in the environment, then the file
  std::string credentials_file;  // "" = AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials
  std::string profile;           // "" = AWS_PROFILE or "default"

  // TLS: https is always verified; plain http only when the endpoint says http://.
  std::string ca_file;  // "" = the system bundle

  // Payload: over https the body is protected by TLS, so UNSIGNED-PAYLOAD
  // saves hashing every segment; over http the SHA-256 is always signed.
  bool unsigned_payload_over_https = true;

  // Retries (exponential backoff with full jitter, see retry_policy.h).
  int max_attempts = 8;
  uint32_t backoff_base_ms = 100;
  uint32_t backoff_max_ms = 10'000;

  // Deadlines ([storage] *_timeout_ms; see HttpOptions). One attempt fails,
  // and is retried, when it cannot connect within connect_timeout_ms, when
  // no byte moves for stall_timeout_ms (a hung server: no first byte), or
  // after request_timeout_ms plus 1 s per MiB of
  // body sent or asked for. operation_timeout_ms bounds one call, its
  // retries included: no attempt starts after it, and the attempt in
  // flight gets only what is left of it (0: bounded by max_attempts alone).
  // The daemon sets it to [lsm] flush_timeout_ms.
  uint32_t connect_timeout_ms = 5'000;
  uint32_t stall_timeout_ms = 15'000;
  uint32_t request_timeout_ms = 30'000;
  uint64_t operation_timeout_ms = 0;

  // Concurrency and memory: idle connections kept for reuse, multipart.
  // The threshold is above the default 64 MiB segment (plus the one request
  // that may overshoot it): the volume uploads several segments at once
  // ([lsm] upload_concurrency), so a segment needs no parallel parts of its
  // own, and a single PUT spares the Create/Complete round trips (and, on
  // s3rver, re-reading the parts to concatenate them). Larger segments
  // still go in parts.
  uint32_t max_idle_connections = 16;
  uint64_t multipart_threshold_bytes = 128ull << 20;  // put() above this uses multipart
  uint64_t multipart_part_bytes = 16ull << 20;        // >= 5 MiB (S3's minimum part)
  uint32_t multipart_parallel_parts = 4;              // parts in flight per put()
  uint32_t list_page_size = 1000;                     // ListObjectsV2 max-keys (tests use small pages)

  // Open() probes the bucket (one list) and conditional PUT (two PUTs of a
  // probe key and a DELETE) so that misconfiguration fails at startup.
  bool probe_on_open = true;

  // "s3://bucket/prefix endpoint=... region=... addressing=path" (no secrets).
  std::string describe() const;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
// The process environment.
std::optional<std::string> process_env(const std::string& name);

// Parses `url` (s3://bucket/prefix?...) and fills the rest from `env`,
// credentials included. Errors name what is missing or malformed.
Result<S3Options> s3_options_from_url(const std::string& url, const EnvLookup& env = process_env);

// Fills options->credentials when empty: environment, then the shared
// credentials file. kInvalidArgument when none are found.
Status resolve_credentials(S3Options* options, const EnvLookup& env = process_env);

}  // namespace portalbd::s3
