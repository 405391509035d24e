#include "src/util/clock.h"
#include "src/engine/writer_lease.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "src/engine/uuid.h"
#include "src/log/log.h"

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

Result<LeaseHolder> read_holder(ObjectStore& store) {
  std::vector<std::byte> raw;
  PBD_RETURN_IF_ERROR(store.get(WriterLease::kKey, &raw));
  try {
    auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
    return LeaseHolder{j.at("host").get<std::string>(), j.at("pid").get<int64_t>(), j.at("started_unix_ms").get<int64_t>(),
                       j.at("expires_unix_ms").get<int64_t>(), j.at("token").get<std::string>()};
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("unreadable ") + WriterLease::kKey + ": " + e.what());
  }
}

bool pid_alive(int64_t pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

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
  auto logger = log::get("engine");

  Status st = store->put_if_absent(kKey, as_bytes(encode(mine)));
  if (st.is(Status::Code::kAlreadyExists)) {
    auto holder = read_holder(*store);
    if (!holder.ok()) return holder.status();
    std::string why;
    if (options.take_over) {
      why = "--take-over";
    } else if (holder->host == options.host && !pid_alive(holder->pid)) {
      why = "its process is gone";
    } else if (holder->expires_unix_ms < now) {
      why = "its lease expired at " + rfc3339_utc(holder->expires_unix_ms);
    } else {
      return Status::Busy("the volume in " + store->url() + " is in use by portalbd on " + holder->describe() +
                          " (lease expires " + rfc3339_utc(holder->expires_unix_ms) +
                          "); stop that daemon, or pass --take-over if it is gone");
    }
    logger->warn("taking over the volume from another portalbd reason={} previous_holder={}", log::quote(why),
                 log::quote(holder->describe()));
    st = store->put(kKey, as_bytes(encode(mine)));
  }
  PBD_RETURN_IF_ERROR(st.With("claim " + std::string(kKey)));
  if (!store->supports_conditional_put()) {
    logger->warn("the store does not enforce conditional puts: fencing relies on the lease expiry alone ttl_ms={}",
                 options.ttl_ms);
  }
  std::unique_ptr<WriterLease> lease(new WriterLease(std::move(store), std::move(options), std::move(mine)));
  PBD_RETURN_IF_ERROR(lease->check());  // lost a race for the take-over?
  return lease;
}

Status WriterLease::check_locked() {
  if (fenced_) return Status::Fenced("another portalbd took over this volume; this daemon no longer writes");
  auto holder = read_holder(*store_);
  if (!holder.ok()) {
    if (holder.status().is(Status::Code::kNotFound)) {
      fenced_ = true;
      log::get("engine")->error("FENCED: the writer lease disappeared from storage; refusing all further writes");
      return Status::Fenced("the writer lease disappeared from storage");
    }
    return holder.status();  // storage trouble: not a verdict
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
  std::lock_guard lock(mu_);
  return check_locked();
}

Status WriterLease::renew() {
  std::lock_guard lock(mu_);
  PBD_RETURN_IF_ERROR(check_locked());
  mine_.expires_unix_ms = options_.clock() + options_.ttl_ms;
  return store_->put(kKey, as_bytes(encode(mine_)));
}

Status WriterLease::release() {
  std::lock_guard lock(mu_);
  if (fenced_) return Status::OK();
  PBD_RETURN_IF_ERROR(check_locked());
  return store_->remove(kKey);
}

bool WriterLease::fenced() const {
  std::lock_guard lock(mu_);
  return fenced_;
}

}  // namespace portalbd
