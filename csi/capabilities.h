// What volumes this driver can serve, and how portalbd errors become gRPC
// status codes. Shared by the controller and node services.
//
// Access modes: SINGLE_NODE_WRITER and SINGLE_NODE_READER_ONLY (one daemon,
// on one node, is the volume's only writer: DESIGN invariant 6), and
// MULTI_NODE_READER_ONLY for a snapshot reader volume only (CreateVolume
// from a snapshot, no copy: every node runs `portalbd --serve-snapshot`,
// which takes no lease and writes nothing). Access types: mount (fs_type
// ext4, the default, or xfs) and raw block.
//
// Thread-safety: pure functions.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <string>

#include "csi.pb.h"
#include "src/store/volume_encryption.h"
#include "src/util/status.h"

namespace portalbd::csi {

inline constexpr const char* kDriverName = "csi.portalbd.io";
inline constexpr uint64_t kCsiBlockBytes = 4096;
inline constexpr uint64_t kDefaultCapacityBytes = 1ull << 30;
inline constexpr uint64_t kMaxCapacityBytes = 1ull << 60;  // 1 EiB, the daemon's limit

// "" when the capability is one this driver serves for some volume, else why
// not. MULTI_NODE_READER_ONLY passes: only a snapshot reader volume serves
// it, which unsupported_reason_for() checks once the volume is known.
std::string unsupported_reason(const ::csi::v1::VolumeCapability& cap);
// "" when volume `volume_id` serves the capability: a snapshot reader volume
// (VolumeRecord::snapshot_reader) no writer access mode, any other volume
// not MULTI_NODE_READER_ONLY. Else why not, naming the volume.
std::string unsupported_reason_for(const ::csi::v1::VolumeCapability& cap, bool snapshot_reader,
                                   const std::string& volume_id);
// volume_context keys CreateVolume hands the node: where the volume's
// storage is, and for a snapshot reader volume the engine snapshot it serves.
inline constexpr const char* kStorageUrlContext = "storageUrl";
inline constexpr const char* kReaderSnapshotContext = "readerSnapshot";
inline constexpr const char* kMultiReaderNeedsSnapshot =
    "a read-only volume many nodes share must come from a snapshot";
// The filesystem a mount capability asks for ("ext4" when unset).
std::string fs_type_of(const ::csi::v1::VolumeCapability& cap);
// SINGLE_NODE_READER_ONLY or MULTI_NODE_READER_ONLY.
bool is_read_only_mode(const ::csi::v1::VolumeCapability& cap);

// The storage settings a call's CSI secrets carry: the AWS_* names the S3
// store reads from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_REGION,
// AWS_DEFAULT_REGION, AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE), overriding
// it for that call. Other keys of the Secret are ignored.
std::map<std::string, std::string> store_settings(const google::protobuf::Map<std::string, std::string>& secrets);

// The encryption key a call's CSI secrets carry, for volumes encrypted
// client-side (issue 25): "encryptionKey", the base64 of 32 random bytes,
// or "encryptionPassphrase", text (scrypt makes the key). Neither: an empty
// source (plain volumes). Both, bad base64 or not 32 bytes: kInvalidArgument,
// never quoting the secret. Errors about the key name these secrets.
Result<EncryptionKeySource> encryption_secret(const google::protobuf::Map<std::string, std::string>& secrets);
inline constexpr const char* kEncryptionKeySecret = "encryptionKey";
inline constexpr const char* kEncryptionPassphraseSecret = "encryptionPassphrase";

// Both of the above, for the controller's calls.
struct CallSecrets {
  std::map<std::string, std::string> settings;
  EncryptionKeySource encryption;
};
Result<CallSecrets> call_secrets(const google::protobuf::Map<std::string, std::string>& secrets);

// portalbd Status -> gRPC status, message kept. kBusy (another writer holds
// the volume) is FAILED_PRECONDITION.
grpc::Status to_grpc(const Status& st);
inline grpc::Status grpc_error(grpc::StatusCode code, const std::string& message) {
  return grpc::Status(code, message);
}

}  // namespace portalbd::csi
