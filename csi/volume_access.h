// VolumeAccess: the CSI driver's way into one portalbd volume's storage,
// keeping DESIGN invariant 6 (one writer per volume).
//
// A volume is reached one of two ways, chosen at Open():
//   * through its daemon, when a portalbd serving it answers on this host's
//     control socket for it (<state-dir>/volumes/<id>/control.sock, where
//     the node service starts daemons): snapshot create/delete go over the
//     control protocol (docs/control-protocol.md);
//   * in this process otherwise: the writer lease is claimed (never taken
//     over) and the engine's Volume opened with its index under
//     <state-dir>/controller/<id>/. A lease held by a live daemon elsewhere
//     is kBusy naming the holder: the caller answers FAILED_PRECONDITION;
//   * through the storage mailbox (mailbox.h) when the lease is held and
//     mailbox_timeout_ms is set: the node plugin where the volume is staged
//     runs snapshot create/delete on its daemon (a snapshot of a volume in
//     use on another node). Only snapshot create/delete work this way.
//
// Thread-safety: one VolumeAccess is used by one thread at a time; the
// controller serializes operations per driver.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "src/store/object_store.h"
#include "src/store/volume_encryption.h"
#include "src/util/status.h"

// Forward declarations only: this header is included beside gRPC's, whose
// abseil defines GUARDED_BY and friends too; the engine's headers (which
// define them again) stay in volume_access.cc.
namespace portalbd {
class Volume;
class WriterLease;
}  // namespace portalbd

namespace portalbd::csi {

// Where the node service keeps a staged volume's daemon: its state dir,
// control socket and NBD socket. The controller looks there too, to find a
// daemon on its own host.
std::string node_volume_dir(const std::string& state_dir, const std::string& volume_id);
std::string control_socket_path(const std::string& state_dir, const std::string& volume_id);
std::string nbd_socket_path(const std::string& state_dir, const std::string& volume_id);
// True when a daemon (writer or snapshot reader) answers a ping on the
// control socket `path`.
bool daemon_answers(const std::string& path);

// Checks a storage URL the driver can keep volumes in: file:// or s3://
// (memory:// dies with each open, so no volume could outlive one call).
Status check_storage_url(const std::string& url);
// "<base>/<id>" without doubling a slash.
std::string join_url(const std::string& base, const std::string& id);

// TLS to the daemons' NBD sockets, when the node serves them with it
// (node_service.h): the directory holds ca-cert.pem, client-cert.pem and
// client-key.pem (libnbd's layout); `hostname` is the name the daemon's
// certificate carries, which nbd-client checks (libnbd, over a unix
// socket, checks the chain to the CA only). Empty certificates: plaintext.
struct NbdTls {
  std::string certificates;
  std::string hostname = "localhost";
};

struct SnapshotTaken {
  int64_t created_unix_ms = 0;
  uint64_t size_bytes = 0;
};

class VolumeAccess {
 public:
  struct OpenOptions {
    std::string url;  // the volume's own storage URL (<base>/<id>)
    std::string volume_id;
    std::string state_dir;  // the driver's --state-dir
    // Create the volume with this size when storage holds none; 0: it must exist.
    uint64_t create_bytes = 0;
    // Grow the volume to this size (in process only; never shrinks). 0: keep it.
    uint64_t grow_to_bytes = 0;
    bool allow_daemon = true;  // false: in process or kBusy
    // > 0: a volume held by a daemon elsewhere is reached through the
    // mailbox, its calls waiting this long for the node's answer.
    int mailbox_timeout_ms = 0;
    // Storage settings from the call's CSI secrets (store_settings() in
    // capabilities.h): AWS_* names that override the environment's.
    std::map<std::string, std::string> settings;
    // The volume's encryption key (encryption_secret() in capabilities.h):
    // a new volume is created encrypted with it; an existing one is opened
    // with it in process and through the mailbox (a daemon holds its own).
    EncryptionKeySource encryption;
  };
  // kNotFound when the volume does not exist (and create_bytes is 0),
  // kBusy when another writer holds it and no daemon here answers for it,
  // kInvalidArgument naming the volume when its key is missing or wrong
  // (checked before the lease: nothing is written then).
  static Result<std::unique_ptr<VolumeAccess>> Open(const OpenOptions& options);
  ~VolumeAccess();

  // Reached through a daemon, on this host's control socket or through the
  // mailbox: nothing but snapshot create/delete is possible.
  bool via_daemon() const { return !daemon_socket_.empty() || mailbox_store_ != nullptr; }
  bool via_mailbox() const { return mailbox_store_ != nullptr; }
  uint64_t size_bytes() const { return size_bytes_; }

  // Idempotent by name: an existing snapshot of that name is returned.
  Result<SnapshotTaken> create_snapshot(const std::string& name);
  // OK when no such snapshot exists.
  Status delete_snapshot(const std::string& name);
  // In process only: the engine volume, for copying.
  std::shared_ptr<Volume> volume() const { return volume_; }

  // Copies what snapshot `name` of `source` holds (data blocks only: the
  // target is new, so holes and zeroes already read as zero) into this
  // volume, then flushes. REQUIRES: both in process.
  Status copy_from_snapshot(VolumeAccess& source, const std::string& name);
  // The same from a daemon's read-only snapshot export (`export_name` is
  // <volume id>@<snapshot>) on the NBD unix socket `nbd_socket`, for a
  // source volume staged on this host: read in 4 MiB pieces, all-zero
  // pieces skipped. REQUIRES: this volume in process.
  Status copy_from_nbd(const std::string& nbd_socket, const std::string& export_name, const NbdTls& tls);

  // Through the mailbox: the node serving this volume copies snapshot
  // `name` into the new volume at target_url (closed here, made by the
  // caller), waiting up to copy_timeout_ms.
  Status copy_snapshot_remotely(const std::string& name, const std::string& target_url, const std::string& target_id,
                                int copy_timeout_ms);

  // Removes every object of the volume, the lease last. In process only.
  Status destroy();

  // Flushes, closes and releases the lease. Called by the destructor too.
  Status close();

 private:
  VolumeAccess() = default;
  // A mailbox call's kBusy (no node answered), with who holds the volume.
  Status mailbox_error(const Status& st) const;

  std::string daemon_socket_;
  std::string volume_id_;
  std::string busy_reason_;  // mailbox mode: who holds the volume
  int mailbox_timeout_ms_ = 0;
  std::shared_ptr<ObjectStore> mailbox_store_;  // <base> of the volume's URL
  std::shared_ptr<ObjectStore> store_;
  std::shared_ptr<WriterLease> lease_;
  std::shared_ptr<Volume> volume_;
  uint64_t size_bytes_ = 0;
};

}  // namespace portalbd::csi
