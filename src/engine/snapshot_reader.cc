#include "src/engine/snapshot_reader.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include "src/log/log.h"

namespace portalbd {
namespace fs = std::filesystem;

namespace {

void remove_index_files(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix, ec);
}

// A status that names an object storage does not have (or no longer has).
bool object_gone(const Status& st) { return st.is(Status::Code::kNotFound); }

}  // namespace

struct SnapshotReader::Load {
  std::shared_ptr<Volume> volume;
  std::shared_ptr<BlockDevice> device;
  SnapshotInfo info;
  std::string index_path;

  ~Load() {
    device.reset();
    if (volume) (void)volume->close();
    volume.reset();
    if (!index_path.empty()) remove_index_files(index_path);  // a private cache: nothing else reads it
  }
};

SnapshotReader::SnapshotReader(std::shared_ptr<ObjectStore> store, SnapshotReaderOptions opts)
    : store_(std::move(store)), opts_(std::move(opts)) {}

SnapshotReader::~SnapshotReader() { close(); }

Result<std::shared_ptr<SnapshotReader>> SnapshotReader::Open(std::shared_ptr<ObjectStore> store,
                                                             SnapshotReaderOptions opts) {
  PBD_RETURN_IF_ERROR(validate_snapshot_name(opts.snapshot));
  if (opts.index_dir.empty()) return Status::InvalidArgument("a snapshot reader needs a directory for its index");
  if (opts.open_attempts < 1) opts.open_attempts = 1;
  std::error_code ec;
  fs::create_directories(opts.index_dir, ec);
  if (ec) return Status::IOError("cannot create " + opts.index_dir + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(opts.index_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("reader-") && name.find(".sqlite") != std::string::npos) fs::remove(entry.path(), ec);
  }
  std::shared_ptr<SnapshotReader> reader(new SnapshotReader(std::move(store), std::move(opts)));
  auto first = reader->load();
  if (!first.ok()) return first.status();
  reader->size_bytes_ = (*first)->volume->size_bytes();
  {
    MutexLock lock(&reader->mu_);
    reader->current_ = std::move(*first);
  }
  auto info = reader->stats().snapshot;
  log::get("engine")->info("serving snapshot read-only name={} id={} layer={} storage={}", info.name, info.uuid,
                           info.layer, log::quote(reader->store_->url()));
  return reader;
}

Result<std::shared_ptr<SnapshotReader::Load>> SnapshotReader::load_once() {
  const uint64_t generation = next_generation_++;
  auto load = std::make_shared<Load>();
  load->index_path = opts_.index_dir + "/reader-" + std::to_string(generation) + ".sqlite";
  remove_index_files(load->index_path);
  VolumeOptions vo = opts_.volume;
  vo.read_only = true;
  vo.index_path = load->index_path;
  vo.flush_interval_ms = 0;  // nothing is ever buffered
  auto volume = Volume::Open(store_, vo);
  if (!volume.ok()) return volume.status();
  load->volume = std::move(*volume);
  auto info = load->volume->find_snapshot(opts_.snapshot);
  if (!info.ok()) return info.status();
  load->info = *info;
  auto device = load->volume->open_snapshot(opts_.snapshot);
  if (!device.ok()) return device.status();
  load->device = std::move(*device);
  loads_++;
  return load;
}

Result<std::shared_ptr<SnapshotReader::Load>> SnapshotReader::load() {
  auto logger = log::get("engine");
  Status last;
  for (int attempt = 1; attempt <= opts_.open_attempts; ++attempt) {
    auto load = load_once();
    if (load.ok()) return load;
    load_failures_++;
    last = load.status();
    // What a racing writer cannot cause: bad arguments, a newer format, a
    // store without the volume, a volume without the snapshot (a load
    // that got as far as the roots found it missing).
    if (last.is(Status::Code::kInvalidArgument) || last.is(Status::Code::kNotSupported)) return last;
    if (last.is(Status::Code::kNotFound)) {
      if (last.message().starts_with("no snapshot named")) {
        return Status::NotFound("snapshot '" + opts_.snapshot + "' is not in " + store_->url() +
                                " (its newest roots record does not name it)");
      }
      if (store_->head("volume.json").status().is(Status::Code::kNotFound)) return last;
    }
    logger->warn(
        "loading the snapshot from storage failed, retrying from a fresh listing snapshot={} attempt={} "
        "error={}",
        opts_.snapshot, attempt, log::quote(last.ToString()));
    if (attempt < opts_.open_attempts) {
      std::this_thread::sleep_for(std::chrono::milliseconds(opts_.retry_delay_ms * attempt));
    }
  }
  // Not kNotFound, which says the snapshot (or the volume) is not there.
  const Status::Code code = last.is(Status::Code::kNotFound) ? Status::Code::kIOError : last.code();
  return Status(code, "could not load snapshot '" + opts_.snapshot + "' from " + store_->url() + " in " +
                          std::to_string(opts_.open_attempts) +
                          " attempts (storage kept changing under it, "
                          "or is damaged): " +
                          last.message());
}

std::shared_ptr<SnapshotReader::Load> SnapshotReader::current() {
  MutexLock lock(&mu_);
  return current_;
}

Status SnapshotReader::refusal() const {
  return Status::ReadOnly("snapshot '" + opts_.snapshot + "' is served read-only (--serve-snapshot)");
}

Status SnapshotReader::with_reload(const std::function<Status(BlockDevice&)>& op) {
  auto used = current();
  if (!used) return Status::Cancelled("the snapshot reader is closed");
  Status st = op(*used->device);
  if (!object_gone(st)) return st;
  const std::string deleted_note =
      "snapshot '" + opts_.snapshot + "' was deleted from " + store_->url() + " while served, and its data collected: ";
  if (deleted_.load()) return Status::IOError(deleted_note + st.message());
  std::shared_ptr<Load> fresh;
  {
    MutexLock reload(&reload_mu_);
    fresh = current();
    if (!fresh) return Status::Cancelled("the snapshot reader is closed");
    if (fresh == used && !deleted_.load()) {
      // GC moved the snapshot's blocks (a segment rewrite), or deleted them
      // with the snapshot: which one, the roots in storage say.
      auto reloaded = load();
      if (!reloaded.ok()) {
        if (reloaded.status().is(Status::Code::kNotFound)) {
          deleted_ = true;
          log::get("engine")->error(
              "the served snapshot was deleted from storage; reads of its collected data fail "
              "snapshot={} error={}",
              opts_.snapshot, log::quote(st.message()));
          return Status::IOError(deleted_note + st.message());
        }
        return Status::IOError(st.message() + "; and reloading snapshot '" + opts_.snapshot +
                               "' failed: " + reloaded.status().message());
      }
      log::get("engine")->info("reloaded the served snapshot after storage moved its data snapshot={} cause={}",
                               opts_.snapshot, log::quote(st.message()));
      MutexLock lock(&mu_);
      current_ = *reloaded;
      fresh = current_;
    }
  }
  if (deleted_.load()) return Status::IOError(deleted_note + st.message());
  Status again = op(*fresh->device);
  if (object_gone(again)) return Status::IOError("snapshot '" + opts_.snapshot + "': " + again.message());
  return again;
}

Status SnapshotReader::read(uint64_t offset, std::span<std::byte> out) {
  return with_reload([&](BlockDevice& d) { return d.read(offset, out); });
}

Status SnapshotReader::read_described(uint64_t offset, std::span<std::byte> out, std::vector<StatusExtent>* extents) {
  return with_reload([&](BlockDevice& d) {
    if (extents) extents->clear();
    return d.read_described(offset, out, extents);
  });
}

Status SnapshotReader::block_status(uint64_t offset, uint64_t length, size_t max_extents,
                                    std::vector<StatusExtent>* out) {
  auto load = current();
  if (!load) return Status::Cancelled("the snapshot reader is closed");
  return load->device->block_status(offset, length, max_extents, out);
}

std::shared_ptr<Volume> SnapshotReader::volume() {
  auto load = current();
  return load ? load->volume : nullptr;
}

SnapshotReaderStats SnapshotReader::stats() {
  SnapshotReaderStats s;
  if (auto load = current()) s.snapshot = load->info;
  s.loads = loads_.load();
  s.load_failures = load_failures_.load();
  s.deleted = deleted_.load();
  return s;
}

void SnapshotReader::close() {
  std::shared_ptr<Load> last;
  {
    MutexLock lock(&mu_);
    last = std::move(current_);
  }
  // Its index files go with the last reference (Load's destructor).
}

}  // namespace portalbd
