// The CSI Node service: a staged volume is a portalbd daemon on this node,
// attached to a /dev/nbdN with the kernel's NBD client, formatted on first
// use and mounted at the staging path; publishing bind-mounts it into pods.
//
// Per volume, under <state-dir>/volumes/<id>/:
//   state/         the daemon's --state-dir (index, journal, cache)
//   control.sock   its control socket (the controller finds it here too)
//   nbd.sock       its NBD unix socket, export name = the volume id
//   portalbd.log   its log
//   stage.json     what NodeStage did: daemon pid, device, staging path
//   encryption.key / encryption.passphrase
//                  an encrypted volume's key, from NodeStage's secrets
//                  (encryptionKey decoded, or encryptionPassphrase as
//                  given), mode 0600, for the daemon's
//                  --encryption-key-file / --encryption-passphrase-file;
//                  removed at NodeUnstage once the daemon has stopped
//
// TLS (NodeOptions::tls_certificates set): the daemon serves its NBD socket
// with --tls require --tls-verify-peer, and nbd-client attaches with
// -enable-tls and the client certificate. The directory holds both sides,
// as nbdkit/qemu (server) and libnbd (client) name them: ca-cert.pem,
// server-cert.pem, server-key.pem, client-cert.pem, client-key.pem.
//
// NodeStage: (1) daemon: reuse one that answers on control.sock, else start
// it (the engine's writer lease refuses it while a live daemon elsewhere
// holds the volume, and lets it take over from one that is gone);
// (2) attach: nbd-client on a free /dev/nbdN, unless stage.json names a
// device still attached; (3) block volumes stop here; mounts: mkfs.<fs> when
// blkid finds no filesystem, mount, and grow the filesystem to the device
// (expansion is applied on the next stage). NodeUnstage undoes them in
// reverse order, stopping the daemon with SIGTERM (it flushes). Every step
// first checks whether it is done already: kubelet retries every call.
//
// A snapshot reader volume (volume_context readerSnapshot, made by
// CreateVolume with MULTI_NODE_READER_ONLY from a snapshot) runs
// `portalbd --serve-snapshot <engine snapshot>` on the source volume's
// storage instead, in the same per-volume directory (its own state dir):
// no writer lease, nothing written to storage, so any number of nodes stage
// it at once. It is attached with nbd-client -readonly, mounted ro (ext4
// also noload, xfs norecovery: no journal replay), never formatted or
// grown, published read-only, and never answers the mailbox.
//
// Thread-safety: one mutex serializes every call (they are short but for
// mkfs and the daemon's start).
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "csi.grpc.pb.h"
#include "csi/mailbox.h"
#include "src/store/volume_encryption.h"
#include "src/util/status.h"

namespace portalbd::csi {

struct NodeOptions {
  std::string node_id;
  std::string state_dir;
  std::string portalbd_bin = "portalbd";
  int max_volumes = 16;
  // How often the storage mailbox (mailbox.h) is looked at for the
  // controller's requests about volumes staged here; 0: never.
  int mailbox_poll_ms = 2000;
  // TLS between nbd-client and the daemons (see above); "": plaintext on
  // the local unix socket.
  std::string tls_certificates;
  // The name nbd-client checks the daemon's certificate against (its CN
  // or a DNS subjectAltName).
  std::string tls_hostname = "localhost";
};

class NodeService final : public ::csi::v1::Node::Service {
 public:
  // Starts the reaper thread (see children_).
  explicit NodeService(NodeOptions options);
  ~NodeService() override;

  grpc::Status NodeStageVolume(grpc::ServerContext*, const ::csi::v1::NodeStageVolumeRequest*,
                               ::csi::v1::NodeStageVolumeResponse*) override;
  grpc::Status NodeUnstageVolume(grpc::ServerContext*, const ::csi::v1::NodeUnstageVolumeRequest*,
                                 ::csi::v1::NodeUnstageVolumeResponse*) override;
  grpc::Status NodePublishVolume(grpc::ServerContext*, const ::csi::v1::NodePublishVolumeRequest*,
                                 ::csi::v1::NodePublishVolumeResponse*) override;
  grpc::Status NodeUnpublishVolume(grpc::ServerContext*, const ::csi::v1::NodeUnpublishVolumeRequest*,
                                   ::csi::v1::NodeUnpublishVolumeResponse*) override;
  grpc::Status NodeGetVolumeStats(grpc::ServerContext*, const ::csi::v1::NodeGetVolumeStatsRequest*,
                                  ::csi::v1::NodeGetVolumeStatsResponse*) override;
  grpc::Status NodeExpandVolume(grpc::ServerContext*, const ::csi::v1::NodeExpandVolumeRequest*,
                                ::csi::v1::NodeExpandVolumeResponse*) override;
  grpc::Status NodeGetCapabilities(grpc::ServerContext*, const ::csi::v1::NodeGetCapabilitiesRequest*,
                                   ::csi::v1::NodeGetCapabilitiesResponse*) override;
  grpc::Status NodeGetInfo(grpc::ServerContext*, const ::csi::v1::NodeGetInfoRequest*,
                           ::csi::v1::NodeGetInfoResponse*) override;

 private:
  struct Staged {
    int daemon_pid = 0;
    std::string device;  // /dev/nbdN, "" before attaching
    std::string staging_path;
    std::string fs_type;      // "" for a block volume
    std::string storage_url;  // the volume's, for the mailbox
    std::string snapshot;     // a snapshot reader volume's engine snapshot, else ""
  };
  Status load_staged(const std::string& id, Staged* out);
  Status save_staged(const std::string& id, const Staged& s);
  // Step 1: a daemon answering for the volume; its pid.
  // `key`: the key or passphrase file to start it with, if any.
  // `snapshot`: serve that snapshot read-only (--serve-snapshot), "" the
  // volume as its writer.
  Result<int> ensure_daemon(const std::string& id, const std::string& url, const std::string& snapshot, int known_pid,
                            const std::map<std::string, std::string>& settings, const EncryptionKeySource& key);
  // Writes the key NodeStage's secrets carry (encryption_secret()) to its
  // 0600 file in the volume's directory, removing a file of the other kind;
  // none: removes both. Returns where the daemon finds it.
  Result<EncryptionKeySource> write_key_file(const std::string& id,
                                             const google::protobuf::Map<std::string, std::string>& secrets);
  // Removes the volume's key files (its daemon has stopped).
  void remove_key_files(const std::string& id);
  // Step 2: the /dev/nbdN the daemon's export is attached to.
  Result<std::string> ensure_attached(const std::string& id, const std::string& known_device, bool read_only);
  Status stop_daemon(const std::string& id, int pid);
  // Every volume with a stage.json here (the mailbox's callback).
  std::vector<MailboxServer::StagedVolume> staged_volumes();

  // Collects the exit status of daemons this process started, once a
  // 200 ms. A daemon killed by something else would otherwise stay a zombie,
  // which kill(pid, 0) reports alive: the next daemon's writer lease would
  // then never see the holder gone, and failover would wait for the lease
  // to expire. Only these pids are waited for, never -1, so run_command()
  // keeps the status of its own children.
  void reap_children();

  const NodeOptions options_;
  std::mutex mu_;
  std::mutex children_mu_;
  std::vector<int> children_;  // guarded by children_mu_
  // The storage settings of each staged volume's NodeStage secrets, for the
  // mailbox (kept in memory only, never written down).
  std::map<std::string, std::map<std::string, std::string>> settings_;  // guarded by children_mu_
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread reaper_;
  std::unique_ptr<MailboxServer> mailbox_;  // last: stopped first
};

}  // namespace portalbd::csi
