// Tests for what the CSI driver accepts and how it reports errors
// (capabilities.h): capability checks, the secrets of a call, the mapping of
// portalbd codes to gRPC codes; and for OpLocks (op_locks.h).
#include "csi/capabilities.h"

#include <doctest/doctest.h>

#include "csi/op_locks.h"

namespace portalbd::csi {
namespace {

using ::csi::v1::VolumeCapability;
using Mode = VolumeCapability::AccessMode;
using Secrets = google::protobuf::Map<std::string, std::string>;

VolumeCapability mount_cap(const std::string& fs_type, Mode::Mode mode) {
  VolumeCapability cap;
  cap.mutable_mount()->set_fs_type(fs_type);
  cap.mutable_access_mode()->set_mode(mode);
  return cap;
}

VolumeCapability block_cap(Mode::Mode mode) {
  VolumeCapability cap;
  cap.mutable_block();
  cap.mutable_access_mode()->set_mode(mode);
  return cap;
}

// The base64 of the bytes 0..31, and of 0..30 (one byte short).
constexpr const char* kKey32 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
constexpr const char* kKey31 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==";

TEST_CASE("csi capabilities: mount ext4/xfs and raw block, single-node modes, are served") {
  CHECK(unsupported_reason(mount_cap("", Mode::SINGLE_NODE_WRITER)) == "");
  CHECK(unsupported_reason(mount_cap("ext4", Mode::SINGLE_NODE_WRITER)) == "");
  CHECK(unsupported_reason(mount_cap("xfs", Mode::SINGLE_NODE_READER_ONLY)) == "");
  CHECK(unsupported_reason(block_cap(Mode::SINGLE_NODE_WRITER)) == "");
  CHECK(unsupported_reason(block_cap(Mode::SINGLE_NODE_READER_ONLY)) == "");
}

TEST_CASE("csi capabilities: other filesystems, multi-node modes and incomplete capabilities are refused") {
  const std::string btrfs = unsupported_reason(mount_cap("btrfs", Mode::SINGLE_NODE_WRITER));
  CHECK(btrfs.find("'btrfs'") != std::string::npos);
  for (auto mode :
       {Mode::MULTI_NODE_MULTI_WRITER, Mode::MULTI_NODE_SINGLE_WRITER, Mode::SINGLE_NODE_MULTI_WRITER, Mode::UNKNOWN}) {
    CAPTURE(Mode::Mode_Name(mode));
    const std::string why = unsupported_reason(block_cap(mode));
    CHECK(why.find(Mode::Mode_Name(mode)) != std::string::npos);
    CHECK(unsupported_reason(mount_cap("ext4", mode)) != "");
  }
  VolumeCapability no_type;
  no_type.mutable_access_mode()->set_mode(Mode::SINGLE_NODE_WRITER);
  CHECK(unsupported_reason(no_type).find("no access type") != std::string::npos);
  VolumeCapability no_mode;
  no_mode.mutable_block();
  CHECK(unsupported_reason(no_mode).find("no access mode") != std::string::npos);
}

TEST_CASE("csi capabilities: MULTI_NODE_READER_ONLY only for snapshot reader volumes, which refuse writers") {
  CHECK(unsupported_reason(mount_cap("ext4", Mode::MULTI_NODE_READER_ONLY)) == "");
  CHECK(unsupported_reason(block_cap(Mode::MULTI_NODE_READER_ONLY)) == "");
  // A writable volume: its writer is one daemon, so no node may share it.
  const std::string writable = unsupported_reason_for(mount_cap("ext4", Mode::MULTI_NODE_READER_ONLY), false, "v-1");
  CHECK(writable.find(kMultiReaderNeedsSnapshot) != std::string::npos);
  CHECK(writable.find("v-1") != std::string::npos);
  CHECK(unsupported_reason_for(mount_cap("ext4", Mode::SINGLE_NODE_WRITER), false, "v-1") == "");
  CHECK(unsupported_reason_for(mount_cap("ext4", Mode::SINGLE_NODE_READER_ONLY), false, "v-1") == "");
  // A snapshot reader: read-only modes only, whatever the access type.
  CHECK(unsupported_reason_for(mount_cap("xfs", Mode::MULTI_NODE_READER_ONLY), true, "r-1") == "");
  CHECK(unsupported_reason_for(block_cap(Mode::SINGLE_NODE_READER_ONLY), true, "r-1") == "");
  for (auto cap : {mount_cap("ext4", Mode::SINGLE_NODE_WRITER), block_cap(Mode::SINGLE_NODE_WRITER)}) {
    const std::string why = unsupported_reason_for(cap, true, "r-1");
    CHECK(why.find("r-1 is a read-only view of a snapshot") != std::string::npos);
    CHECK(why.find("SINGLE_NODE_WRITER") != std::string::npos);
  }
  // What any volume refuses stays refused, with the general reason.
  CHECK(unsupported_reason_for(mount_cap("btrfs", Mode::MULTI_NODE_READER_ONLY), true, "r-1").find("'btrfs'") !=
        std::string::npos);
  CHECK(unsupported_reason_for(block_cap(Mode::MULTI_NODE_MULTI_WRITER), true, "r-1").find("MULTI_NODE_MULTI_WRITER") !=
        std::string::npos);
}

TEST_CASE("csi capabilities: fs_type defaults to ext4; read-only is the two READER_ONLY modes") {
  CHECK(fs_type_of(mount_cap("", Mode::SINGLE_NODE_WRITER)) == "ext4");
  CHECK(fs_type_of(mount_cap("xfs", Mode::SINGLE_NODE_WRITER)) == "xfs");
  CHECK(fs_type_of(block_cap(Mode::SINGLE_NODE_WRITER)) == "ext4");
  CHECK(is_read_only_mode(mount_cap("ext4", Mode::SINGLE_NODE_READER_ONLY)));
  CHECK(is_read_only_mode(block_cap(Mode::SINGLE_NODE_READER_ONLY)));
  CHECK(is_read_only_mode(mount_cap("ext4", Mode::MULTI_NODE_READER_ONLY)));
  CHECK_FALSE(is_read_only_mode(mount_cap("ext4", Mode::SINGLE_NODE_WRITER)));
  CHECK_FALSE(is_read_only_mode(VolumeCapability()));
}

TEST_CASE("csi secrets: store_settings keeps the AWS_* names and drops every other key") {
  Secrets secrets;
  secrets["AWS_ACCESS_KEY_ID"] = "AKID";
  secrets["AWS_SECRET_ACCESS_KEY"] = "s3cr3t";
  secrets["AWS_ENDPOINT_URL_S3"] = "http://127.0.0.1:9000";
  secrets["AWS_SHARED_CREDENTIALS_FILE"] = "/etc/aws";
  secrets["encryptionKey"] = kKey32;
  secrets["PATH"] = "/bin";
  secrets["aws_region"] = "lower-case-is-not-the-name";
  const auto settings = store_settings(secrets);
  CHECK(settings == std::map<std::string, std::string>{{"AWS_ACCESS_KEY_ID", "AKID"},
                                                       {"AWS_SECRET_ACCESS_KEY", "s3cr3t"},
                                                       {"AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000"},
                                                       {"AWS_SHARED_CREDENTIALS_FILE", "/etc/aws"}});
  CHECK(store_settings(Secrets()).empty());
}

TEST_CASE("csi secrets: encryptionKey is the base64 of 32 bytes, encryptionPassphrase any non-empty text") {
  SUBCASE("neither: a plain volume") {
    auto source = encryption_secret(Secrets());
    REQUIRE(source.ok());
    CHECK(source->key.empty());
    CHECK(source->passphrase.empty());
  }
  SUBCASE("a key") {
    Secrets s;
    s[kEncryptionKeySecret] = kKey32;
    auto source = encryption_secret(s);
    REQUIRE(source.ok());
    REQUIRE(source->key.size() == 32);
    for (size_t i = 0; i < 32; ++i) CHECK(static_cast<unsigned char>(source->key[i]) == i);
    CHECK(source->passphrase.empty());
    CHECK(source->key_option.find(kEncryptionKeySecret) != std::string::npos);
  }
  SUBCASE("a passphrase") {
    Secrets s;
    s[kEncryptionPassphraseSecret] = "correct horse";
    auto source = encryption_secret(s);
    REQUIRE(source.ok());
    CHECK(source->key.empty());
    CHECK(source->passphrase == "correct horse");
  }
}

TEST_CASE("csi secrets: a bad key, an empty passphrase or both secrets are refused without quoting the secret") {
  struct Case {
    const char* name;
    const char* value;
    const char* says;
  };
  for (const Case& c :
       {Case{kEncryptionKeySecret, kKey31, "decodes to 31 bytes"},
        Case{kEncryptionKeySecret, "not*base64*at*all!", "is not base64"},
        Case{kEncryptionKeySecret, "", "decodes to 0 bytes"}, Case{kEncryptionPassphraseSecret, "", "is empty"}}) {
    CAPTURE(std::string(c.value));
    Secrets s;
    s[c.name] = c.value;
    s["AWS_SECRET_ACCESS_KEY"] = "s3cr3t";
    auto source = encryption_secret(s);
    REQUIRE_FALSE(source.ok());
    CHECK(source.status().is(Status::Code::kInvalidArgument));
    CHECK(source.status().message().find(c.says) != std::string::npos);
    CHECK(source.status().message().find(c.name) != std::string::npos);  // names the secret
    if (*c.value != '\0') CHECK(source.status().message().find(c.value) == std::string::npos);
    CHECK(source.status().message().find("s3cr3t") == std::string::npos);
    auto both = call_secrets(s);
    CHECK_FALSE(both.ok());
  }
  Secrets both;
  both[kEncryptionKeySecret] = kKey32;
  both[kEncryptionPassphraseSecret] = "correct horse";
  auto source = encryption_secret(both);
  REQUIRE_FALSE(source.ok());
  CHECK(source.status().is(Status::Code::kInvalidArgument));
  CHECK(source.status().message().find("both") != std::string::npos);
  CHECK(source.status().message().find(kKey32) == std::string::npos);
  CHECK(source.status().message().find("correct horse") == std::string::npos);
}

TEST_CASE("csi secrets: call_secrets carries both the storage settings and the key") {
  Secrets s;
  s["AWS_REGION"] = "eu-west-1";
  s[kEncryptionKeySecret] = kKey32;
  auto secrets = call_secrets(s);
  REQUIRE(secrets.ok());
  CHECK(secrets->settings == std::map<std::string, std::string>{{"AWS_REGION", "eu-west-1"}});
  CHECK(secrets->encryption.key.size() == 32);
}

TEST_CASE("csi to_grpc: each portalbd code has its gRPC code and keeps its message") {
  using C = Status::Code;
  using G = grpc::StatusCode;
  const std::pair<C, G> table[] = {
      {C::kInvalidArgument, G::INVALID_ARGUMENT}, {C::kOutOfRange, G::OUT_OF_RANGE},
      {C::kNoSpace, G::RESOURCE_EXHAUSTED},       {C::kNotFound, G::NOT_FOUND},
      {C::kAlreadyExists, G::ALREADY_EXISTS},     {C::kBusy, G::FAILED_PRECONDITION},
      {C::kUnavailable, G::UNAVAILABLE},          {C::kIOError, G::UNAVAILABLE},
      {C::kNotSupported, G::UNIMPLEMENTED},       {C::kCorruption, G::INTERNAL},
  };
  for (const auto& [code, want] : table) {
    CAPTURE(std::string(Status::CodeName(code)));
    grpc::Status st = to_grpc(Status(code, "what happened"));
    CHECK(st.error_code() == want);
    CHECK(st.error_message() == "what happened");
  }
  CHECK(to_grpc(Status::OK()).ok());
}

TEST_CASE("csi OpLocks: a key is held by one call at a time and released with its Hold") {
  OpLocks locks;
  std::string busy;
  auto first = locks.try_hold({"name:a", "vol:x"}, &busy);
  REQUIRE(first.has_value());
  SUBCASE("any shared key refuses the whole set, naming that key") {
    CHECK_FALSE(locks.try_hold({"name:b", "vol:x"}, &busy).has_value());
    CHECK(busy == "vol:x");
    // Nothing of the refused set is held: name:b is free.
    CHECK(locks.try_hold({"name:b"}, &busy).has_value());
  }
  SUBCASE("other keys go ahead at once") {
    auto other = locks.try_hold({"name:b", "vol:y"}, &busy);
    CHECK(other.has_value());
  }
  SUBCASE("released when the Hold goes, also after a move") {
    std::optional<OpLocks::Hold> moved(std::move(*first));
    first.reset();  // the moved-from Hold releases nothing
    CHECK_FALSE(locks.try_hold({"vol:x"}, &busy).has_value());
    moved.reset();
    CHECK(locks.try_hold({"vol:x", "name:a"}, &busy).has_value());
  }
  SUBCASE("empty keys and keys with an empty value ('vol:') are not locks") {
    auto a = locks.try_hold({"", "vol:"}, &busy);
    auto b = locks.try_hold({"", "vol:"}, &busy);
    CHECK(a.has_value());
    CHECK(b.has_value());
  }
}

}  // namespace
}  // namespace portalbd::csi
