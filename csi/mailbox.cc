#include "csi/mailbox.h"

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "csi/volume_access.h"
#include "ctl/control_client.h"
#include "src/log/log.h"

namespace portalbd::csi {
namespace {

using json = nlohmann::json;

constexpr int kControlTimeoutMs = 120000;
constexpr int kReplyPollMs = 250;

std::string requests_prefix(const std::string& volume_id) { return "_csi/requests/" + volume_id + "/"; }
std::string replies_prefix(const std::string& volume_id) { return "_csi/replies/" + volume_id + "/"; }

std::string random_request_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) out += kHex[rng() % 16];
  return out;
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

Result<std::optional<json>> get_json(ObjectStore& store, const std::string& key) {
  std::vector<std::byte> raw;
  Status st = store.get(key, &raw);
  if (st.is(Status::Code::kNotFound)) return std::optional<json>();
  if (!st.ok()) return st;
  try {
    return std::optional<json>(json::parse(std::string(reinterpret_cast<const char*>(raw.data()), raw.size())));
  } catch (const std::exception& e) {
    return Status::Corruption(key + " is not JSON: " + e.what());
  }
}

Status status_from(const json& reply) {
  if (reply.value("ok", false)) return Status::OK();
  const std::string code = reply.value("code", "IOError"), message = reply.value("message", "");
  if (code == "NotFound") return Status::NotFound(message);
  if (code == "InvalidArgument") return Status::InvalidArgument(message);
  if (code == "AlreadyExists") return Status::AlreadyExists(message);
  if (code == "Busy") return Status::Busy(message);
  if (code == "Unavailable") return Status::Unavailable(message);
  return Status::IOError(message);
}

}  // namespace

std::string base_of_volume_url(const std::string& volume_url) {
  std::string u = volume_url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  const size_t slash = u.rfind('/');
  return slash == std::string::npos ? u : u.substr(0, slash);
}

Result<MailboxReply> mailbox_call(const std::shared_ptr<ObjectStore>& store, const std::string& volume_id,
                                  const std::string& op, const std::string& snapshot_name, int timeout_ms,
                                  const std::map<std::string, std::string>& extra) {
  const std::string id = random_request_id();
  const std::string request_key = requests_prefix(volume_id) + id + ".json";
  const std::string reply_key = replies_prefix(volume_id) + id + ".json";
  json request = {{"op", op}, {"name", snapshot_name}};
  for (const auto& [k, v] : extra) request[k] = v;
  const std::string body = request.dump();
  PBD_RETURN_IF_ERROR(store->put(request_key, bytes_of(body)).With("post request " + request_key));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto reply = get_json(*store, reply_key);
    if (!reply.ok()) return reply.status().With("read reply " + reply_key);
    if (*reply) {
      (void)store->remove(reply_key);
      PBD_RETURN_IF_ERROR(status_from(**reply));
      MailboxReply out;
      out.created_unix_ms = (*reply)->value("created_unix_ms", int64_t{0});
      return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kReplyPollMs));
  }
  (void)store->remove(request_key);
  // Answered just as we gave up: take the answer after all.
  auto late = get_json(*store, reply_key);
  if (late.ok() && *late) {
    (void)store->remove(reply_key);
    PBD_RETURN_IF_ERROR(status_from(**late));
    MailboxReply out;
    out.created_unix_ms = (*late)->value("created_unix_ms", int64_t{0});
    return out;
  }
  return Status::Busy("no portalbd-csi node plugin serving volume " + volume_id + " answered '" + op + "' within " +
                      std::to_string(timeout_ms / 1000) + " s");
}

MailboxServer::MailboxServer(std::function<std::vector<StagedVolume>()> staged, int poll_ms, std::string state_dir)
    : staged_(std::move(staged)), poll_ms_(poll_ms), state_dir_(std::move(state_dir)) {
  thread_ = std::thread([this] { run(); });
}

MailboxServer::~MailboxServer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MailboxServer::run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(poll_ms_), [this] { return stopping_; })) {
    lock.unlock();
    std::map<std::string, std::map<std::string, StagedVolume>> by_base;
    for (auto& v : staged_()) by_base[base_of_volume_url(v.storage_url)][v.volume_id] = v;
    for (const auto& [base, volumes] : by_base) serve_base(base, volumes);
    lock.lock();
  }
}

Status MailboxServer::copy_snapshot(const StagedVolume& source, const std::string& name, const std::string& target_url,
                                    const std::string& target_id) {
  if (target_url.empty() || target_id.empty()) return Status::InvalidArgument("snapshot.copy without a target");
  VolumeAccess::OpenOptions o;
  o.url = target_url;
  o.volume_id = target_id;
  o.state_dir = state_dir_;
  o.allow_daemon = false;
  o.settings = source.settings;
  o.encryption = source.encryption;
  auto target = VolumeAccess::Open(o);
  if (!target.ok()) return target.status().With("open the copy's target " + target_id);
  Status st = (*target)->copy_from_nbd(source.nbd_socket, source.volume_id + "@" + name, source.tls);
  Status closed = (*target)->close();
  std::error_code ec;
  std::filesystem::remove_all(state_dir_ + "/controller/" + target_id, ec);
  return st.ok() ? closed : st;
}

void MailboxServer::serve_base(const std::string& base, const std::map<std::string, StagedVolume>& volumes) {
  auto logger = log::get("csi");
  auto& store = stores_[base];
  if (!store) {
    auto opened = open_object_store(base, volumes.begin()->second.settings);
    if (!opened.ok()) {
      logger->warn("mailbox: cannot open {}: {}", log::quote(base), opened.status().ToString());
      stores_.erase(base);
      return;
    }
    store = *opened;
  }
  std::vector<ObjectInfo> requests;
  if (Status st = store->list("_csi/requests/", &requests); !st.ok()) {
    logger->warn("mailbox: list requests in {}: {}", log::quote(base), st.ToString());
    return;
  }
  for (const auto& r : requests) {
    // _csi/requests/<volume id>/<request id>.json
    const std::string rest = r.key.substr(std::string("_csi/requests/").size());
    const size_t slash = rest.find('/');
    if (slash == std::string::npos) continue;
    auto it = volumes.find(rest.substr(0, slash));
    if (it == volumes.end()) continue;  // not staged here
    const std::string request_id = rest.substr(slash + 1);
    auto request = get_json(*store, r.key);
    if (!request.ok() || !*request) continue;  // withdrawn meanwhile, or unreadable: next round
    const std::string op = (*request)->value("op", ""), name = (*request)->value("name", "");
    json reply;
    if (op == "snapshot.copy") {
      Status st =
          copy_snapshot(it->second, name, (*request)->value("target_url", ""), (*request)->value("target_id", ""));
      reply = st.ok() ? json{{"ok", true}}
                      : json{{"ok", false}, {"code", Status::CodeName(st.code())}, {"message", st.message()}};
    } else if (op != "snapshot.create" && op != "snapshot.delete") {
      reply = {{"ok", false}, {"code", "InvalidArgument"}, {"message", "unknown mailbox op '" + op + "'"}};
    } else {
      auto done = ctl::call(it->second.control_socket, op, json{{"name", name}}, kControlTimeoutMs);
      if (op == "snapshot.create" && !done.ok() && done.status().is(Status::Code::kAlreadyExists)) {
        done = ctl::call(it->second.control_socket, "snapshot.show", json{{"name", name}}, kControlTimeoutMs);
      }
      if (op == "snapshot.delete" && !done.ok() && done.status().is(Status::Code::kNotFound)) done = json::object();
      if (done.ok()) {
        reply = {{"ok", true}, {"created_unix_ms", done->value("created_unix_ms", int64_t{0})}};
      } else {
        reply = {{"ok", false}, {"code", Status::CodeName(done.status().code())}, {"message", done.status().message()}};
      }
    }
    const std::string body = reply.dump();
    const std::string reply_key = "_csi/replies/" + it->first + "/" + request_id;
    if (Status st = store->put(reply_key, bytes_of(body)); !st.ok()) {
      logger->warn("mailbox: write reply {}: {}", reply_key, st.ToString());
      continue;
    }
    (void)store->remove(r.key);
    logger->info("mailbox: ran {} name={} for volume id={} ok={}", op, name, it->first, reply.value("ok", false));
  }
}

}  // namespace portalbd::csi
