#include "csi/capabilities.h"

#include "src/util/base64.h"

namespace portalbd::csi {

using ::csi::v1::VolumeCapability;

std::string unsupported_reason(const VolumeCapability& cap) {
  if (!cap.has_mount() && !cap.has_block()) return "the capability names no access type (mount or block)";
  if (cap.has_mount()) {
    const std::string fs = fs_type_of(cap);
    if (fs != "ext4" && fs != "xfs") return "fs_type '" + fs + "' is not supported (ext4 or xfs)";
  }
  if (!cap.has_access_mode()) return "the capability has no access mode";
  switch (cap.access_mode().mode()) {
    case VolumeCapability::AccessMode::SINGLE_NODE_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY:
    case VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY: return "";
    default:
      return "access mode " + VolumeCapability::AccessMode::Mode_Name(cap.access_mode().mode()) +
             " is not supported: a portalbd volume is written by one daemon on one node "
             "(SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, or MULTI_NODE_READER_ONLY for a volume "
             "made from a snapshot)";
  }
}

std::string unsupported_reason_for(const VolumeCapability& cap, bool snapshot_reader, const std::string& volume_id) {
  if (std::string why = unsupported_reason(cap); !why.empty()) return why;
  const auto mode = cap.access_mode().mode();
  if (snapshot_reader && !is_read_only_mode(cap)) {
    return "volume " + volume_id + " is a read-only view of a snapshot: access mode " +
           VolumeCapability::AccessMode::Mode_Name(mode) +
           " would write it (SINGLE_NODE_READER_ONLY or MULTI_NODE_READER_ONLY only)";
  }
  if (!snapshot_reader && mode == VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY) {
    return "volume " + volume_id + " is writable: " + kMultiReaderNeedsSnapshot +
           " (CreateVolume with MULTI_NODE_READER_ONLY and a snapshot as volume_content_source)";
  }
  return "";
}

std::string fs_type_of(const VolumeCapability& cap) {
  if (!cap.has_mount() || cap.mount().fs_type().empty()) return "ext4";
  return cap.mount().fs_type();
}

bool is_read_only_mode(const VolumeCapability& cap) {
  return cap.access_mode().mode() == VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY ||
         cap.access_mode().mode() == VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY;
}

std::map<std::string, std::string> store_settings(const google::protobuf::Map<std::string, std::string>& secrets) {
  static const char* const kNames[] = {"AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                       "AWS_ENDPOINT_URL",   "AWS_ENDPOINT_URL_S3",   "AWS_REGION",
                                       "AWS_DEFAULT_REGION", "AWS_PROFILE",           "AWS_SHARED_CREDENTIALS_FILE"};
  std::map<std::string, std::string> out;
  for (const char* name : kNames) {
    auto it = secrets.find(name);
    if (it != secrets.end()) out[name] = it->second;
  }
  return out;
}

Result<EncryptionKeySource> encryption_secret(const google::protobuf::Map<std::string, std::string>& secrets) {
  EncryptionKeySource source;
  source.key_option = std::string("the ") + kEncryptionKeySecret + " secret";
  source.passphrase_option = std::string("the ") + kEncryptionPassphraseSecret + " secret";
  auto key = secrets.find(kEncryptionKeySecret);
  auto passphrase = secrets.find(kEncryptionPassphraseSecret);
  if (key != secrets.end() && passphrase != secrets.end()) {
    return Status::InvalidArgument("the secrets hold both " + std::string(kEncryptionKeySecret) + " and " +
                                   kEncryptionPassphraseSecret + "; give one");
  }
  if (key != secrets.end()) {
    auto bytes = base64_decode(key->second);
    if (!bytes) {
      return Status::InvalidArgument(source.key_option +
                                     " is not base64 (make a key with: head -c 32 /dev/urandom | base64 -w0)");
    }
    if (bytes->size() != 32) {
      return Status::InvalidArgument(source.key_option + " decodes to " + std::to_string(bytes->size()) +
                                     " bytes; it must be the base64 of exactly 32 random bytes "
                                     "(head -c 32 /dev/urandom | base64 -w0)");
    }
    source.key = std::move(*bytes);
  } else if (passphrase != secrets.end()) {
    if (passphrase->second.empty()) return Status::InvalidArgument(source.passphrase_option + " is empty");
    source.passphrase = passphrase->second;
  }
  return source;
}

Result<CallSecrets> call_secrets(const google::protobuf::Map<std::string, std::string>& secrets) {
  auto encryption = encryption_secret(secrets);
  if (!encryption.ok()) return encryption.status();
  return CallSecrets{store_settings(secrets), std::move(*encryption)};
}

grpc::Status to_grpc(const Status& st) {
  using C = Status::Code;
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (st.code()) {
    case C::kOk: return grpc::Status::OK;
    case C::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case C::kOutOfRange: code = grpc::StatusCode::OUT_OF_RANGE; break;
    case C::kNoSpace: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case C::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case C::kAlreadyExists: code = grpc::StatusCode::ALREADY_EXISTS; break;
    case C::kBusy: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    case C::kUnavailable:
    case C::kIOError: code = grpc::StatusCode::UNAVAILABLE; break;
    case C::kNotSupported: code = grpc::StatusCode::UNIMPLEMENTED; break;
    default: break;
  }
  return grpc::Status(code, st.message());
}

}  // namespace portalbd::csi
