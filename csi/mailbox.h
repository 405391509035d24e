// Mailbox: how the controller reaches the daemon of a volume staged on
// another node, through object storage, the one thing every node and the
// controller share (no network path or credentials between pods needed).
//
//   <base>/_csi/requests/<volume id>/<request id>.json   the controller's request
//   <base>/_csi/replies/<volume id>/<request id>.json    the node's answer
//
// <base> is the volume's storage URL without its last component (the
// volume's own prefix stays the engine's alone). Requests: snapshot.create
// and snapshot.delete of one engine snapshot name, and snapshot.copy (copy
// that snapshot, read from the daemon's snapshot export, into a new volume
// the controller made: a restore or clone of a volume in use), all
// idempotent (a copy is written again whole), so a
// request answered twice (a node that crashed between running it and
// removing it) does no harm. The node plugin (MailboxServer) looks every
// poll interval, with one LIST per storage base, for requests naming volumes
// whose daemon runs on it, runs them on the daemon's control socket, writes
// the reply, and removes the request. The controller (call()) removes the
// reply, and the request when it gives up.
//
// Thread-safety: call() is safe from any thread; MailboxServer runs its own
// thread and takes the list of staged volumes from a callback.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "csi/volume_access.h"
#include "src/store/object_store.h"
#include "src/util/status.h"

namespace portalbd::csi {

// "<base>" of a volume URL "<base>/<id>".
std::string base_of_volume_url(const std::string& volume_url);

struct MailboxReply {
  int64_t created_unix_ms = 0;  // snapshot.create: the snapshot's creation time
};

// Sends one request and waits up to timeout_ms for its reply. kBusy when no
// node answered in time (the request is withdrawn), else the daemon's status.
// `extra`: more string fields of the request (snapshot.copy's target).
Result<MailboxReply> mailbox_call(const std::shared_ptr<ObjectStore>& base_store, const std::string& volume_id,
                                  const std::string& op, const std::string& snapshot_name, int timeout_ms,
                                  const std::map<std::string, std::string>& extra = {});

class MailboxServer {
 public:
  struct StagedVolume {
    std::string volume_id;
    std::string storage_url;                      // the volume's own URL
    std::string control_socket;                   // its daemon's
    std::string nbd_socket;                       // its daemon's NBD socket (snapshot exports)
    std::map<std::string, std::string> settings;  // storage settings (NodeStage's secrets)
    // Its key file, if it is encrypted: snapshot.copy opens the target with
    // it (a clone is encrypted with its source's key).
    EncryptionKeySource encryption;
    NbdTls tls;  // to its daemon's NBD socket
  };
  // `staged` is called on the server's thread each round.
  // `state_dir`: the node's, where snapshot.copy keeps the target's index
  // while it copies.
  MailboxServer(std::function<std::vector<StagedVolume>()> staged, int poll_ms, std::string state_dir);
  ~MailboxServer();

 private:
  void run();
  void serve_base(const std::string& base, const std::map<std::string, StagedVolume>& volumes);
  Status copy_snapshot(const StagedVolume& source, const std::string& name, const std::string& target_url,
                       const std::string& target_id);
  // The store of a base, opened with the settings of one of its volumes.

  const std::function<std::vector<StagedVolume>()> staged_;
  const int poll_ms_;
  const std::string state_dir_;
  std::map<std::string, std::shared_ptr<ObjectStore>> stores_;  // by base URL; the thread's own
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace portalbd::csi
