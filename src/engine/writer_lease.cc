#include "src/engine/writer_lease.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "src/engine/uuid.h"
#include "src/log/log.h"
#include "src/util/clock.h"

namespace portalbd {
namespace {

std::string encode(const LeaseHolder& h) {
  nlohmann::json j = {{"host", h.host},
                      {"pid", h.pid},
                      {"started_unix_ms", h.started_unix_ms},
                      {"expires_unix_ms", h.expires_unix_ms},
                      {"token", h.token}};
  return j.dump(1) + "\n";
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// kNotFound when there is no lease, kCorruption when the object is not a
// whole lease (torn, empty), any other error when storage failed.
Result<LeaseHolder> read_holder(ObjectStore& store) {
  std::vector<std::byte> raw;
  PBD_RETURN_IF_ERROR(store.get(WriterLease::kKey, &raw));
  try {
    auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
    return LeaseHolder{j.at("host").get<std::string>(), j.at("pid").get<int64_t>(),
                       j.at("started_unix_ms").get<int64_t>(), j.at("expires_unix_ms").get<int64_t>(),
                       j.at("token").get<std::string>()};
  } catch (const std::exception& e) {
    return Status::Corruption(std::to_string(raw.size()) + " bytes that are not a lease (" + e.what() + ")");
  }
}

// Some stores answer a PUT before a GET sees the object: s3rver acknowledges
// once the metadata is written and creates the file later, so a GET right
// after may miss the object or read part of it. Where a miss or a torn read
// would be a verdict, read again a few times first (about 1 s in all).
Result<LeaseHolder> read_holder_settled(ObjectStore& store) {
  auto holder = read_holder(store);
  for (int retry = 1; retry <= 5; ++retry) {
    if (holder.ok() ||
        !(holder.status().is(Status::Code::kNotFound) || holder.status().is(Status::Code::kCorruption))) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(40 * retry));
    holder = read_holder(store);
  }
  return holder;
}

bool pid_alive(int64_t pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

// Why the existing claim may be replaced (L2, L3), or kBusy saying why not
// and what to do. kNotFound when the lease vanished meanwhile.
Result<std::string> why_breakable(ObjectStore& store, const LeaseOptions& options, int64_t now) {
  const std::string object = std::string(WriterLease::kKey) + " in " + store.url();
  auto holder = read_holder(store);
  if (holder.ok()) {
    if (options.take_over) return std::string("--take-over");
    if (holder->host == options.host && !pid_alive(holder->pid)) return std::string("its process is gone");
    if (holder->expires_unix_ms < now) return "its lease expired at " + rfc3339_utc(holder->expires_unix_ms);
    return Status::Busy("the volume in " + store.url() + " is in use by portalbd on " + holder->describe() +
                        " (lease expires " + rfc3339_utc(holder->expires_unix_ms) +
                        "); stop that daemon, or pass --take-over if it is gone");
  }
  if (!holder.status().is(Status::Code::kCorruption)) {
    if (holder.status().is(Status::Code::kNotFound)) return holder.status();
    return holder.status().With("read " + object);
  }
  // L3: torn or empty. Held by an unknown writer until it is older than the TTL.
  const std::string unreadable =
      object + " is unreadable: " + holder.status().message() + " (a portalbd that died while writing it leaves it so)";
  if (options.take_over) return "--take-over (" + unreadable + ")";
  auto info = store.head(WriterLease::kKey);
  if (!info.ok()) {
    if (info.status().is(Status::Code::kNotFound)) return info.status();
    return info.status().With("read " + object);
  }
  if (info->modified_unix_ms <= 0) {
    return Status::Busy(unreadable +
                        "; the store does not say when it was written, so it counts as held by an "
                        "unknown portalbd: stop any other portalbd on this volume, then pass --take-over");
  }
  const int64_t held_until = info->modified_unix_ms + options.ttl_ms;
  if (now > held_until) {
    return "an unreadable lease written at " + rfc3339_utc(info->modified_unix_ms) + ", more than the lease TTL (" +
           std::to_string(options.ttl_ms / 1000) + " s) ago";
  }
  return Status::Busy(unreadable + "; it counts as held by an unknown portalbd until " + rfc3339_utc(held_until) +
                      " (written " + rfc3339_utc(info->modified_unix_ms) + ", lease TTL " +
                      std::to_string(options.ttl_ms / 1000) +
                      " s): start again after that, or stop any other "
                      "portalbd on this volume and pass --take-over");
}

}  // namespace

std::string LeaseHolder::describe() const {
  return "host " + host + " pid " + std::to_string(pid) + " since " + rfc3339_utc(started_unix_ms);
}

Result<std::unique_ptr<WriterLease>> WriterLease::Acquire(std::shared_ptr<ObjectStore> store, LeaseOptions options) {
  if (!options.clock) {
    options.clock = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
  if (options.host.empty()) {
    char buf[256] = {0};
    ::gethostname(buf, sizeof buf - 1);
    options.host = buf;
  }
  if (options.pid == 0) options.pid = ::getpid();
  const int64_t now = options.clock();
  LeaseHolder mine{options.host, options.pid, now, now + options.ttl_ms, new_uuid()};
  const std::string claim = encode(mine);
  auto logger = log::get("engine");
  const bool conditional = store->supports_conditional_put();

  // The lease may vanish between a refused create and the read that follows
  // (its holder released it): then try again from the top.
  bool replaced = false;
  Status st = Status::Busy("the lease kept changing while portalbd tried to claim it; try again");
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (conditional) {
      st = store->put_if_absent(kKey, as_bytes(claim));
      if (!st.is(Status::Code::kAlreadyExists)) break;
    } else if (auto head = store->head(kKey); !head.ok()) {
      // L1 without a conditional put: look before writing.
      if (!head.status().is(Status::Code::kNotFound)) return head.status().With("read " + std::string(kKey));
      st = store->put(kKey, as_bytes(claim));
      break;
    }
    auto why = why_breakable(*store, options, now);
    if (!why.ok()) {
      if (why.status().is(Status::Code::kNotFound)) continue;
      return why.status();
    }
    std::string previous = "unknown (unreadable lease)";
    if (auto holder = read_holder(*store); holder.ok()) previous = holder->describe();
    logger->warn("taking over the volume from another portalbd reason={} previous_holder={}", log::quote(*why),
                 log::quote(previous));
    st = store->put(kKey, as_bytes(claim));
    replaced = true;
    break;
  }
  PBD_RETURN_IF_ERROR(st.With("claim " + std::string(kKey)));

  // L4: a racing writer whose claim landed after ours shows here.
  auto back = read_holder_settled(*store);
  if (!back.ok()) return back.status().With("read back " + std::string(kKey));
  if (back->token != mine.token) {
    return Status::Busy("another portalbd (" + back->describe() + ") claimed the volume in " + store->url() +
                        " at the same time; it keeps it");
  }
  if (!conditional) {
    logger->warn("the store does not enforce conditional puts: fencing relies on the lease alone ttl_ms={}",
                 options.ttl_ms);
  }
  return std::unique_ptr<WriterLease>(new WriterLease(std::move(store), std::move(options), std::move(mine), replaced));
}

Status WriterLease::check_locked() {
  if (released_) return Status::Fenced("this portalbd released the volume");
  if (fenced_) return Status::Fenced("another portalbd took over this volume; this daemon no longer writes");
  auto holder = read_holder(*store_);
  if (holder.status().is(Status::Code::kNotFound)) holder = read_holder_settled(*store_);  // a verdict: be sure
  if (!holder.ok()) {
    if (holder.status().is(Status::Code::kNotFound)) {
      fenced_ = true;
      log::get("engine")->error("FENCED: the writer lease disappeared from storage; refusing all further writes");
      return Status::Fenced("the writer lease disappeared from storage");
    }
    // Storage trouble, or a lease torn by a PUT still being written: not a
    // verdict (and never overwritten: that could undo a take-over).
    return Status::Unavailable("cannot read " + std::string(kKey) + ": " + holder.status().ToString());
  }
  if (holder->token != mine_.token) {
    fenced_ = true;
    log::get("engine")->error("FENCED: another portalbd took over this volume; refusing all further writes holder={}",
                              log::quote(holder->describe()));
    return Status::Fenced("another portalbd (" + holder->describe() + ") took over this volume");
  }
  return Status::OK();
}

Status WriterLease::check() {
  MutexLock lock(&mu_);
  return check_locked();
}

Status WriterLease::renew(int64_t valid_for_ms) {
  MutexLock lock(&mu_);
  PBD_RETURN_IF_ERROR(check_locked());
  mine_.expires_unix_ms = options_.clock() + (valid_for_ms > 0 ? valid_for_ms : options_.ttl_ms);
  return store_->put(kKey, as_bytes(encode(mine_)));
}

int64_t WriterLease::remaining_ms() const {
  MutexLock lock(&mu_);
  return mine_.expires_unix_ms - options_.clock();
}

Status WriterLease::release() {
  MutexLock lock(&mu_);
  if (fenced_ || released_) return Status::OK();
  PBD_RETURN_IF_ERROR(check_locked());
  PBD_RETURN_IF_ERROR(store_->remove(kKey));
  released_ = true;
  return Status::OK();
}

void WriterLease::fence(const std::string& why) {
  MutexLock lock(&mu_);
  if (fenced_) return;
  fenced_ = true;
  log::get("engine")->error("FENCED: {}; refusing all further writes", why);
}

bool WriterLease::fenced() const {
  MutexLock lock(&mu_);
  return fenced_;
}

}  // namespace portalbd
