#include "fuse/snapshot_catalog.h"

#include <ctime>

namespace portalbd::fuse {

int64_t parse_taken_time(const std::string& description) {
  static const std::string kTaken = " taken ";
  const size_t at = description.rfind(kTaken);
  if (at == std::string::npos) return 0;
  std::tm tm{};
  const char* start = description.c_str() + at + kTaken.size();
  const char* end = strptime(start, "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::vector<SnapshotFile> snapshots_in(const ExportListing& listing) {
  std::vector<SnapshotFile> out;
  const std::string prefix = listing.live_export + "@";
  for (const auto& e : listing.exports) {
    if (e.name.size() <= prefix.size() || e.name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string name = e.name.substr(prefix.size());
    // A name that cannot be a file name is skipped rather than mangled: a
    // mangled name could collide with a real one.
    if (name == "." || name == ".." || name.find('/') != std::string::npos || name.size() > 250) continue;
    out.push_back({0, std::move(name), e.name, parse_taken_time(e.description), e.description});
  }
  return out;
}

SnapshotCatalog::SnapshotCatalog(NbdEndpoint endpoint, std::string live_export, uint64_t first_ino,
                                 std::chrono::milliseconds ttl, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)),
      ttl_(ttl),
      timeout_(timeout),
      live_export_(std::move(live_export)),
      next_ino_(first_ino) {}

Status SnapshotCatalog::prime() {
  MutexLock lock(&mu_);
  auto listing = query_exports(endpoint_, live_export_, Clock::now() + timeout_);
  if (!listing.ok()) return listing.status();
  apply_locked(*listing, static_cast<int64_t>(std::time(nullptr)));
  refreshed_at_ = Clock::now();
  return Status::OK();
}

void SnapshotCatalog::apply(const ExportListing& listing, int64_t now_unix_s) {
  MutexLock lock(&mu_);
  apply_locked(listing, now_unix_s);
}

void SnapshotCatalog::apply_locked(const ExportListing& listing, int64_t now_unix_s) {
  live_export_ = listing.live_export;
  size_bytes_ = listing.size_bytes;
  std::map<std::string, uint64_t> now;
  for (auto& s : snapshots_in(listing)) {
    uint64_t ino = 0;
    if (auto it = current_.find(s.name); it != current_.end()) {
      const SnapshotFile& old = by_ino_.at(it->second);
      if (old.export_name == s.export_name && old.description == s.description) ino = old.ino;
    }
    if (ino == 0) {
      ino = next_ino_++;
      s.ino = ino;
      by_ino_.emplace(ino, std::move(s));
    }
    now.emplace(by_ino_.at(ino).name, ino);
  }
  current_ = std::move(now);
  health_.reachable = true;
  health_.last_error.clear();
  health_.last_ok_unix_s = now_unix_s;
}

void SnapshotCatalog::refresh_if_stale_locked() {
  if (Clock::now() - refreshed_at_ < ttl_) return;
  auto listing = query_exports(endpoint_, live_export_, Clock::now() + timeout_);
  // Stamp even a failed refresh: while the daemon is down, each lookup must
  // not pay a connection attempt.
  refreshed_at_ = Clock::now();
  if (!listing.ok()) {
    health_.reachable = false;
    health_.last_error = listing.status().message();
    return;
  }
  apply_locked(*listing, static_cast<int64_t>(std::time(nullptr)));
}

std::vector<SnapshotFile> SnapshotCatalog::list() {
  MutexLock lock(&mu_);
  refresh_if_stale_locked();
  std::vector<SnapshotFile> out;
  for (const auto& [name, ino] : current_) out.push_back(by_ino_.at(ino));
  return out;
}

std::optional<SnapshotFile> SnapshotCatalog::find_name(const std::string& name) {
  MutexLock lock(&mu_);
  refresh_if_stale_locked();
  auto it = current_.find(name);
  if (it == current_.end()) return std::nullopt;
  return by_ino_.at(it->second);
}

std::optional<SnapshotFile> SnapshotCatalog::find_ino(uint64_t ino) {
  MutexLock lock(&mu_);
  auto it = by_ino_.find(ino);
  if (it == by_ino_.end()) return std::nullopt;
  return it->second;
}

uint64_t SnapshotCatalog::device_size() {
  MutexLock lock(&mu_);
  return size_bytes_;
}

std::string SnapshotCatalog::live_export() {
  MutexLock lock(&mu_);
  return live_export_;
}

SnapshotCatalog::Health SnapshotCatalog::health() {
  MutexLock lock(&mu_);
  return health_;
}

}  // namespace portalbd::fuse
