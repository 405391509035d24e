#include "csi/volume_access.h"

#include <libnbd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "csi/mailbox.h"
#include "ctl/control_client.h"
#include "src/engine/volume.h"
#include "src/engine/writer_lease.h"
#include "src/format/segment.h"
#include "src/log/log.h"
#include "src/store/volume_encryption.h"

namespace portalbd::csi {
namespace {

using json = nlohmann::json;

// A control call's limit: snapshot create flushes the write buffer first.
constexpr int kControlTimeoutMs = 120000;
// Copy unit of copy_from_snapshot: extents are asked for this much at a
// time, data read and written in pieces of kCopyChunk.
constexpr uint64_t kStatusWindow = 1ull << 30;
constexpr uint64_t kCopyChunk = 4ull << 20;

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool daemon_answers(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return false;
  auto r = ctl::call(path, "ping", json::object(), 5000);
  return r.ok();
}

std::string node_volume_dir(const std::string& state_dir, const std::string& volume_id) {
  return state_dir + "/volumes/" + volume_id;
}
std::string control_socket_path(const std::string& state_dir, const std::string& volume_id) {
  return node_volume_dir(state_dir, volume_id) + "/control.sock";
}
std::string nbd_socket_path(const std::string& state_dir, const std::string& volume_id) {
  return node_volume_dir(state_dir, volume_id) + "/nbd.sock";
}

Status check_storage_url(const std::string& url) {
  if (url.rfind("file://", 0) == 0 || url.rfind("s3://", 0) == 0) return Status::OK();
  if (url.rfind("memory://", 0) == 0) {
    return Status::InvalidArgument(
        "storage URL " + url + " cannot hold CSI volumes: memory:// starts empty at every open; use file:// or s3://");
  }
  return Status::InvalidArgument("storage URL '" + url + "' is not file:///DIR or s3://BUCKET/PREFIX");
}

std::string join_url(const std::string& base, const std::string& id) {
  std::string b = base;
  while (!b.empty() && b.back() == '/') b.pop_back();
  return b + "/" + id;
}

Result<std::unique_ptr<VolumeAccess>> VolumeAccess::Open(const OpenOptions& o) {
  auto logger = log::get("csi");
  std::unique_ptr<VolumeAccess> va(new VolumeAccess());
  const std::string socket = control_socket_path(o.state_dir, o.volume_id);
  if (o.allow_daemon && o.grow_to_bytes == 0 && daemon_answers(socket)) {
    auto st = ctl::call(socket, "status", json::object(), kControlTimeoutMs);
    if (!st.ok()) return st.status().With("status of the daemon serving volume " + o.volume_id);
    va->daemon_socket_ = socket;
    va->size_bytes_ = st->value("size_bytes", uint64_t{0});
    return va;
  }

  auto store = open_object_store(o.url, o.settings);
  if (!store.ok()) return store.status().With("open storage " + o.url);
  va->store_ = *store;
  if (o.create_bytes == 0) {
    auto head = va->store_->head("volume.json");
    if (head.status().is(Status::Code::kNotFound)) return Status::NotFound("no volume in " + o.url);
    if (!head.ok()) return head.status().With("look for the volume in " + o.url);
  }
  // The key is settled before the lease, the first write, as the daemon
  // settles it: a new volume's volume.json will record it; an encrypted
  // volume without its key, or with a wrong one, is refused here.
  auto sealed = open_volume_store(va->store_, o.encryption);
  if (!sealed.ok()) {
    if (!sealed.status().is(Status::Code::kInvalidArgument)) return sealed.status().With("open volume " + o.volume_id);
    return Status::InvalidArgument("volume " + o.volume_id + ": " + sealed.status().message());
  }
  va->store_ = *sealed;
  va->volume_id_ = o.volume_id;
  auto lease = WriterLease::Acquire(va->store_, LeaseOptions{});
  if (!lease.ok()) {
    if (lease.status().is(Status::Code::kBusy) && o.allow_daemon && o.mailbox_timeout_ms > 0 && o.grow_to_bytes == 0 &&
        o.create_bytes == 0) {
      const std::string base = base_of_volume_url(o.url);
      auto base_store = open_object_store(base, o.settings);
      if (!base_store.ok()) return base_store.status().With("open storage " + base);
      std::vector<std::byte> manifest;
      PBD_RETURN_IF_ERROR(va->store_->get("volume.json", &manifest).With("read the volume's size"));
      try {
        va->size_bytes_ = json::parse(std::string(reinterpret_cast<const char*>(manifest.data()), manifest.size()))
                              .at("size_bytes")
                              .get<uint64_t>();
      } catch (const std::exception& e) {
        return Status::Corruption("volume.json of " + o.url + ": " + e.what());
      }
      va->mailbox_store_ = *base_store;
      va->mailbox_timeout_ms_ = o.mailbox_timeout_ms;
      va->busy_reason_ = lease.status().message();
      return va;
    }
    if (lease.status().is(Status::Code::kBusy)) {
      return Status::Busy("volume " + o.volume_id + " is in use by another portalbd (" + lease.status().message() +
                          ")");
    }
    return lease.status().With("claim volume " + o.volume_id);
  }
  va->lease_ = std::move(*lease);

  VolumeOptions vo;
  vo.lease = va->lease_;
  vo.size_bytes = o.create_bytes != 0 ? o.create_bytes : o.grow_to_bytes;
  vo.grow = o.grow_to_bytes != 0;
  vo.flush_interval_ms = 0;  // every change here ends with an explicit flush
  vo.cache_bytes = 64ull << 20;
  const std::string dir = o.state_dir + "/controller/" + o.volume_id;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("create " + dir + ": " + ec.message());
  vo.index_path = dir + "/index.sqlite";
  auto vol = Volume::Open(va->store_, vo);
  if (!vol.ok()) {
    (void)va->lease_->release();
    va->lease_.reset();
    return vol.status().With("open volume " + o.volume_id);
  }
  va->volume_ = std::move(*vol);
  va->size_bytes_ = va->volume_->size_bytes();
  logger->debug("opened volume in process id={} size_bytes={}", o.volume_id, va->size_bytes_);
  return va;
}

VolumeAccess::~VolumeAccess() { (void)close(); }

Status VolumeAccess::close() {
  Status result;
  if (volume_) {
    result = volume_->close();
    volume_.reset();
  }
  if (lease_) {
    Status st = lease_->release();
    if (result.ok()) result = st;
    lease_.reset();
  }
  return result;
}

Result<SnapshotTaken> VolumeAccess::create_snapshot(const std::string& name) {
  SnapshotTaken out;
  out.size_bytes = size_bytes_;
  if (via_mailbox()) {
    auto r = mailbox_call(mailbox_store_, volume_id_, "snapshot.create", name, mailbox_timeout_ms_);
    if (!r.ok()) return mailbox_error(r.status());
    out.created_unix_ms = r->created_unix_ms != 0 ? r->created_unix_ms : now_unix_ms();
    return out;
  }
  if (via_daemon()) {
    auto shown = ctl::call(daemon_socket_, "snapshot.show", json{{"name", name}}, kControlTimeoutMs);
    if (shown.ok()) {
      out.created_unix_ms = shown->value("created_unix_ms", int64_t{0});
      return out;
    }
    auto made = ctl::call(daemon_socket_, "snapshot.create", json{{"name", name}}, kControlTimeoutMs);
    if (!made.ok()) return made.status().With("snapshot " + name + " through " + daemon_socket_);
    out.created_unix_ms = made->value("created_unix_ms", now_unix_ms());
    return out;
  }
  auto found = volume_->find_snapshot(name);
  if (found.ok()) {
    out.created_unix_ms = found->created_unix_ms;
    return out;
  }
  auto made = volume_->create_snapshot(name);
  if (!made.ok()) return made.status();
  out.created_unix_ms = made->created_unix_ms;
  return out;
}

Status VolumeAccess::delete_snapshot(const std::string& name) {
  Status st;
  if (via_mailbox()) {
    auto r = mailbox_call(mailbox_store_, volume_id_, "snapshot.delete", name, mailbox_timeout_ms_);
    st = r.ok() ? Status::OK() : mailbox_error(r.status());
  } else if (via_daemon()) {
    auto r = ctl::call(daemon_socket_, "snapshot.delete", json{{"name", name}}, kControlTimeoutMs);
    st = r.ok() ? Status::OK() : r.status();
  } else {
    st = volume_->delete_snapshot(name);
  }
  if (st.is(Status::Code::kNotFound)) return Status::OK();
  return st;
}

Status VolumeAccess::mailbox_error(const Status& st) const {
  if (!st.is(Status::Code::kBusy)) return st;
  return Status::Busy("volume " + volume_id_ + " is in use (" + busy_reason_ + "), and " + st.message());
}

Status VolumeAccess::copy_from_snapshot(VolumeAccess& source, const std::string& name) {
  if (via_daemon() || source.via_daemon()) {
    return Status::Busy("copying between volumes needs both detached (not staged on a node)");
  }
  auto dev = source.volume_->open_snapshot(name);
  if (!dev.ok()) return dev.status().With("open snapshot " + name);
  const uint64_t size = std::min((*dev)->size_bytes(), volume_->size_bytes());
  std::vector<std::byte> buf;
  uint64_t copied = 0;
  for (uint64_t window = 0; window < size; window += kStatusWindow) {
    const uint64_t len = std::min(kStatusWindow, size - window);
    uint64_t pos = window;
    while (pos < window + len) {
      std::vector<StatusExtent> extents;
      PBD_RETURN_IF_ERROR((*dev)->block_status(pos, window + len - pos, 4096, &extents));
      if (extents.empty()) return Status::IOError("block status of snapshot " + name + " returned no extent");
      for (const auto& e : extents) {
        if (e.state == ExtentState::kData) {
          for (uint64_t off = 0; off < e.length; off += kCopyChunk) {
            const uint64_t n = std::min(kCopyChunk, e.length - off);
            buf.resize(n);
            PBD_RETURN_IF_ERROR((*dev)->read(pos + off, buf));
            PBD_RETURN_IF_ERROR(volume_->write(pos + off, buf, false));
            copied += n;
          }
        }
        pos += e.length;
      }
    }
  }
  log::get("csi")->info("copied snapshot {} into a new volume bytes={}", name, copied);
  return volume_->flush();
}

Status VolumeAccess::copy_from_nbd(const std::string& nbd_socket, const std::string& export_name, const NbdTls& tls) {
  if (via_daemon()) return Status::Busy("copying needs the target volume in process");
  std::unique_ptr<nbd_handle, decltype(&nbd_close)> h(nbd_create(), &nbd_close);
  if (!h) return Status::IOError(std::string("nbd_create: ") + nbd_get_error());
  if (!tls.certificates.empty() && (nbd_set_tls(h.get(), LIBNBD_TLS_REQUIRE) == -1 ||
                                    nbd_set_tls_certificates(h.get(), tls.certificates.c_str()) == -1)) {
    return Status::InvalidArgument("TLS for export " + export_name + ": " + nbd_get_error());
  }
  if (nbd_set_export_name(h.get(), export_name.c_str()) == -1 || nbd_connect_unix(h.get(), nbd_socket.c_str()) == -1) {
    return Status::Unavailable("connect to export " + export_name + " on " + nbd_socket + ": " + nbd_get_error());
  }
  const int64_t source_size = nbd_get_size(h.get());
  if (source_size < 0) return Status::IOError(std::string("size of export ") + export_name + ": " + nbd_get_error());
  const uint64_t size = std::min(static_cast<uint64_t>(source_size), volume_->size_bytes());
  std::vector<std::byte> buf;
  uint64_t copied = 0;
  for (uint64_t off = 0; off < size; off += kCopyChunk) {
    const uint64_t n = std::min(kCopyChunk, size - off);
    buf.resize(n);
    if (nbd_pread(h.get(), buf.data(), n, off, 0) == -1) {
      return Status::IOError("read " + export_name + " at " + std::to_string(off) + ": " + nbd_get_error());
    }
    if (std::all_of(buf.begin(), buf.end(), [](std::byte b) { return b == std::byte{0}; })) continue;
    PBD_RETURN_IF_ERROR(volume_->write(off, buf, false));
    copied += n;
  }
  nbd_shutdown(h.get(), 0);
  log::get("csi")->info("copied export {} into a new volume bytes={}", export_name, copied);
  return volume_->flush();
}

Status VolumeAccess::copy_snapshot_remotely(const std::string& name, const std::string& target_url,
                                            const std::string& target_id, int copy_timeout_ms) {
  if (!via_mailbox()) return Status::InvalidArgument("copy_snapshot_remotely needs a volume reached by mailbox");
  auto r = mailbox_call(mailbox_store_, volume_id_, "snapshot.copy", name, copy_timeout_ms,
                        {{"target_url", target_url}, {"target_id", target_id}});
  return r.ok() ? Status::OK() : mailbox_error(r.status());
}

Status VolumeAccess::destroy() {
  if (via_daemon()) return Status::Busy("the volume is staged: its daemon is running");
  PBD_RETURN_IF_ERROR(volume_->close());
  volume_.reset();
  std::vector<ObjectInfo> objs;
  PBD_RETURN_IF_ERROR(store_->list("", &objs));
  for (const auto& o : objs) {
    if (o.key == WriterLease::kKey) continue;
    PBD_RETURN_IF_ERROR(store_->remove(o.key));
  }
  Status st = lease_->release();
  lease_.reset();
  return st;
}

}  // namespace portalbd::csi
