#include "meta/index.h"

#include <sqlite3.h>

#include <chrono>

namespace portalbd::meta {
namespace {

// Each entry upgrades the schema by one version. Never edit a shipped entry:
// append a new one.
const char* const kMigrations[] = {
    // 0 -> 1
    R"(CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
       CREATE TABLE layers(id INTEGER PRIMARY KEY, parent INTEGER, created_ms INTEGER NOT NULL);
       CREATE TABLE roots(name TEXT PRIMARY KEY, layer INTEGER NOT NULL, kind TEXT NOT NULL,
                          uuid TEXT, created_ms INTEGER NOT NULL);
       CREATE TABLE segments(seq INTEGER PRIMARY KEY, layer INTEGER NOT NULL, bytes INTEGER NOT NULL,
                             data_bytes INTEGER NOT NULL, entries INTEGER NOT NULL, created_ms INTEGER NOT NULL);
       CREATE TABLE extents(layer INTEGER NOT NULL, lba INTEGER NOT NULL, nblocks INTEGER NOT NULL,
                            state INTEGER NOT NULL, seq INTEGER NOT NULL, frame_off INTEGER NOT NULL,
                            frame_len INTEGER NOT NULL, raw_len INTEGER NOT NULL, codec INTEGER NOT NULL,
                            crc INTEGER NOT NULL, block_in_frame INTEGER NOT NULL,
                            PRIMARY KEY(layer, lba)) WITHOUT ROWID;)",
    // 1 -> 2: garbage collection marks segments it will delete after a grace period.
    R"(ALTER TABLE segments ADD COLUMN doomed_ms INTEGER NOT NULL DEFAULT 0;)",
    // 2 -> 3: each layer's count of data blocks, so that a volume opens
    // without reading every extent (issue 23: the extents stay on disk).
    R"(ALTER TABLE layers ADD COLUMN data_blocks INTEGER NOT NULL DEFAULT 0;
       UPDATE layers SET data_blocks=(SELECT COALESCE(SUM(nblocks), 0) FROM extents
                                      WHERE extents.layer=layers.id AND extents.state=0);)",
};

// Every layer's data_blocks counted again from its extents.
constexpr const char* kRecountDataBlocks =
    "UPDATE layers SET data_blocks=(SELECT COALESCE(SUM(nblocks), 0) FROM extents "
    "WHERE extents.layer=layers.id AND extents.state=0)";

constexpr const char* kExtentColumns =
    "lba, nblocks, state, seq, frame_off, frame_len, raw_len, codec, crc, block_in_frame";

MappedExtent read_extent(const Stmt& s) {
  MappedExtent x;
  x.lba = static_cast<uint64_t>(s.col_int(0));
  x.nblocks = static_cast<uint64_t>(s.col_int(1));
  x.state = static_cast<ExtentState>(s.col_int(2));
  x.seq = static_cast<uint64_t>(s.col_int(3));
  x.frame.offset = static_cast<uint64_t>(s.col_int(4));
  x.frame.stored_len = static_cast<uint32_t>(s.col_int(5));
  x.frame.raw_len = static_cast<uint32_t>(s.col_int(6));
  x.frame.codec = static_cast<Codec>(s.col_int(7));
  x.frame.crc = static_cast<uint32_t>(s.col_int(8));
  x.block_in_frame = static_cast<uint32_t>(s.col_int(9));
  return x;
}

// The part of `x` from block `from` (absolute) onward.
MappedExtent tail_of(MappedExtent x, uint64_t from) {
  uint64_t skip = from - x.lba;
  x.lba = from;
  x.nblocks -= skip;
  if (x.state == ExtentState::kData) x.block_in_frame += static_cast<uint32_t>(skip);
  return x;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Rolls back an open transaction unless commit() was called.
class Txn {
 public:
  explicit Txn(Db* db) : db_(db) {}
  Status begin() { return db_->exec("BEGIN IMMEDIATE"); }
  Status commit() {
    Status st = db_->exec("COMMIT");
    if (st.ok()) done_ = true;
    return st;
  }
  ~Txn() {
    if (!done_) (void)db_->exec("ROLLBACK");
  }

 private:
  Db* db_;
  bool done_ = false;
};

}  // namespace

Result<std::unique_ptr<Index>> Index::Open(const std::string& path) {
  auto db = Db::Open(path);
  if (!db.ok()) return db.status();
  std::unique_ptr<Index> index(new Index(std::move(*db)));
  MutexLock lock(&index->mu_);  // not shared yet: for the analysis only
  // WAL + FULL: a committed transaction survives kill -9 and power loss.
  PBD_RETURN_IF_ERROR(index->db_->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
  PBD_RETURN_IF_ERROR(index->migrate().With("migrate index " + path));
  PBD_RETURN_IF_ERROR(index->prepare_statements());
  if (!path.empty() && path != ":memory:" && path.rfind("file::memory:", 0) != 0) {
    auto reader = Db::Open(path);
    if (!reader.ok()) return reader.status();
    PBD_RETURN_IF_ERROR((*reader)->exec("PRAGMA query_only=1"));
    MutexLock reader_lock(&index->reader_mu_);  // not shared yet: for the analysis only
    index->reader_ = std::move(*reader);
  }
  return index;
}

Status Index::with_reader(const std::function<Status(Db&)>& fn) {
  {
    MutexLock lock(&reader_mu_);
    if (reader_) return fn(*reader_);
  }
  MutexLock lock(&mu_);
  return fn(*db_);
}

Status Index::load_range(uint64_t layer, uint64_t start, uint64_t end,
                         const std::function<void(const MappedExtent&)>& fn) {
  return with_reader([&](Db& db) {
    // The extent that starts before `start` and may reach into the range,
    // then those starting inside it: both walk the (layer, lba) key.
    auto s = db.prepare(std::string("SELECT ") + kExtentColumns +
                        " FROM (SELECT * FROM extents WHERE layer=?1 AND lba<?2 ORDER BY lba DESC LIMIT 1)"
                        " UNION ALL SELECT " +
                        kExtentColumns + " FROM extents WHERE layer=?1 AND lba>=?2 AND lba<?3");
    if (!s.ok()) return s.status();
    s->bind(1, static_cast<int64_t>(layer)).bind(2, static_cast<int64_t>(start)).bind(3, static_cast<int64_t>(end));
    Status err;
    while (s->step(&err)) {
      const MappedExtent x = read_extent(*s);
      if (x.lba + x.nblocks > start) fn(x);
    }
    return err;
  });
}

Status Index::scan_from(uint64_t layer, uint64_t from, size_t limit, const std::function<void(const MappedExtent&)>& fn,
                        bool* more) {
  *more = false;
  return with_reader([&](Db& db) {
    auto s = db.prepare(std::string("SELECT ") + kExtentColumns +
                        " FROM extents WHERE layer=?1 AND lba>=?2 ORDER BY lba LIMIT ?3");
    if (!s.ok()) return s.status();
    s->bind(1, static_cast<int64_t>(layer))
        .bind(2, static_cast<int64_t>(from))
        .bind(3, static_cast<int64_t>(limit) + 1);
    Status err;
    size_t n = 0;
    while (s->step(&err)) {
      if (n++ == limit) {
        *more = true;
        break;
      }
      fn(read_extent(*s));
    }
    return err;
  });
}

Result<std::map<uint64_t, uint64_t>> Index::last_data_ends() {
  std::map<uint64_t, uint64_t> ends;
  Status st = with_reader([&](Db& db) {
    auto s = db.prepare(
        "SELECT id, COALESCE((SELECT lba + nblocks FROM extents WHERE layer=layers.id AND state=0"
        " ORDER BY lba DESC LIMIT 1), 0) FROM layers");
    if (!s.ok()) return s.status();
    Status err;
    while (s->step(&err)) ends[static_cast<uint64_t>(s->col_int(0))] = static_cast<uint64_t>(s->col_int(1));
    return err;
  });
  if (!st.ok()) return st;
  return ends;
}

Status Index::migrate() {
  auto st = db_->prepare("PRAGMA user_version");
  if (!st.ok()) return st.status();
  Status err;
  int version = st->step(&err) ? static_cast<int>(st->col_int(0)) : 0;
  PBD_RETURN_IF_ERROR(err);
  const int latest = static_cast<int>(std::size(kMigrations));
  if (version > latest) {
    return Status::NotSupported("index schema version " + std::to_string(version) + " is newer than this portalbd (" +
                                std::to_string(latest) + ")");
  }
  for (int v = version; v < latest; ++v) {
    Txn txn(db_.get());
    PBD_RETURN_IF_ERROR(txn.begin());
    PBD_RETURN_IF_ERROR(db_->exec(kMigrations[v]));
    PBD_RETURN_IF_ERROR(db_->exec("PRAGMA user_version=" + std::to_string(v + 1)));
    PBD_RETURN_IF_ERROR(txn.commit());
  }
  return Status::OK();
}

Status Index::prepare_statements() {
  const std::string cols = kExtentColumns;
  struct {
    Stmt* stmt;
    std::string sql;
  } all[] = {
      {&left_overlap_, "SELECT " + cols + " FROM extents WHERE layer=?1 AND lba<?2 ORDER BY lba DESC LIMIT 1"},
      {&inner_overlap_, "SELECT " + cols + " FROM extents WHERE layer=?1 AND lba>=?2 AND lba<?3 ORDER BY lba"},
      {&delete_extent_, "DELETE FROM extents WHERE layer=?1 AND lba=?2"},
      {&insert_extent_,
       "INSERT OR REPLACE INTO extents(layer, " + cols + ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"},
      {&shrink_extent_, "UPDATE extents SET nblocks=?3 WHERE layer=?1 AND lba=?2"},
      {&add_data_blocks_, "UPDATE layers SET data_blocks=data_blocks+?2 WHERE id=?1"},
      {&insert_segment_,
       "INSERT OR REPLACE INTO segments(seq, layer, bytes, data_bytes, entries, created_ms) VALUES(?1,?2,?3,?4,?5,?6)"},
      {&raise_applied_seq_,
       "INSERT INTO meta(key, value) VALUES('applied_seq', CAST(?1 AS TEXT)) "
       "ON CONFLICT(key) DO UPDATE SET value=MAX(CAST(value AS INTEGER), ?1)"},
      {&raise_max_wseq_,
       "INSERT INTO meta(key, value) VALUES('max_wseq', CAST(?1 AS TEXT)) "
       "ON CONFLICT(key) DO UPDATE SET value=MAX(CAST(value AS INTEGER), ?1)"},
  };
  for (auto& [stmt, sql] : all) {
    auto s = db_->prepare(sql);
    if (!s.ok()) return s.status();
    *stmt = std::move(*s);
  }
  return Status::OK();
}

Result<std::optional<std::string>> Index::get_meta(const std::string& key) {
  MutexLock lock(&mu_);
  auto s = db_->prepare("SELECT value FROM meta WHERE key=?1");
  if (!s.ok()) return s.status();
  s->bind(1, key);
  Status err;
  if (s->step(&err)) return std::optional<std::string>(s->col_text(0));
  if (!err.ok()) return err;
  return std::optional<std::string>();
}

Status Index::set_meta_locked(const std::string& key, const std::string& value) {
  auto s = db_->prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
  if (!s.ok()) return s.status();
  s->bind(1, key).bind(2, value);
  return s->exec();
}

Status Index::set_meta(const std::string& key, const std::string& value) {
  MutexLock lock(&mu_);
  return set_meta_locked(key, value);
}

Result<uint64_t> Index::last_seq() {
  MutexLock lock(&mu_);
  // The highest sequence ever applied: garbage collection may have removed
  // the newest segment's row, so the segments table alone is not enough.
  auto s = db_->prepare(
      "SELECT MAX(COALESCE(MAX(seq), 0), COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key='applied_seq'), "
      "0))"
      " FROM segments");
  if (!s.ok()) return s.status();
  Status err;
  uint64_t seq = s->step(&err) ? static_cast<uint64_t>(s->col_int(0)) : 0;
  if (!err.ok()) return err;
  return seq;
}

Result<uint64_t> Index::live_layer() {
  MutexLock lock(&mu_);
  auto s = db_->prepare("SELECT layer FROM roots WHERE name='live'");
  if (!s.ok()) return s.status();
  Status err;
  if (s->step(&err)) return static_cast<uint64_t>(s->col_int(0));
  if (!err.ok()) return err;
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  const std::string now = std::to_string(now_ms());
  PBD_RETURN_IF_ERROR(db_->exec("INSERT INTO layers(id, parent, created_ms) VALUES(1, NULL, " + now + ")"));
  PBD_RETURN_IF_ERROR(
      db_->exec("INSERT INTO roots(name, layer, kind, uuid, created_ms) VALUES('live', 1, 'live', NULL, " + now + ")"));
  PBD_RETURN_IF_ERROR(txn.commit());
  return uint64_t{1};
}

Result<std::vector<uint64_t>> Index::layer_chain(uint64_t layer) {
  MutexLock lock(&mu_);
  auto s = db_->prepare("SELECT parent FROM layers WHERE id=?1");
  if (!s.ok()) return s.status();
  std::vector<uint64_t> chain;
  std::optional<uint64_t> cur = layer;
  while (cur) {
    chain.insert(chain.begin(), *cur);
    if (chain.size() > 1000000) return Status::Corruption("layer chain has a cycle");
    s->bind(1, static_cast<int64_t>(*cur));
    Status err;
    if (!s->step(&err)) {
      PBD_RETURN_IF_ERROR(err);
      return Status::Corruption("layer " + std::to_string(*cur) + " is missing from the index");
    }
    cur = s->col_is_null(0) ? std::nullopt : std::optional<uint64_t>(static_cast<uint64_t>(s->col_int(0)));
    s->reset();
  }
  return chain;
}

Status Index::insert_extent(uint64_t layer, const MappedExtent& x) {
  insert_extent_.bind(1, static_cast<int64_t>(layer))
      .bind(2, static_cast<int64_t>(x.lba))
      .bind(3, static_cast<int64_t>(x.nblocks))
      .bind(4, static_cast<int64_t>(x.state))
      .bind(5, static_cast<int64_t>(x.seq))
      .bind(6, static_cast<int64_t>(x.frame.offset))
      .bind(7, static_cast<int64_t>(x.frame.stored_len))
      .bind(8, static_cast<int64_t>(x.frame.raw_len))
      .bind(9, static_cast<int64_t>(x.frame.codec))
      .bind(10, static_cast<int64_t>(x.frame.crc))
      .bind(11, static_cast<int64_t>(x.block_in_frame));
  return insert_extent_.exec();
}

Status Index::apply_entry(uint64_t layer, uint64_t seq, const SegmentEntry& e, const std::vector<FrameRef>& frames,
                          int64_t* data_delta) {
  MappedExtent x;
  x.lba = e.lba;
  x.nblocks = e.nblocks;
  x.state = e.state;
  if (e.state == ExtentState::kData) {
    x.seq = seq;
    x.frame = frames.at(e.frame);
    x.block_in_frame = e.block_in_frame;
  }
  return put_extent(layer, x, data_delta);
}

Status Index::put_extent(uint64_t layer, const MappedExtent& put, int64_t* data_delta) {
  const uint64_t start = put.lba, end = put.lba + put.nblocks;
  auto lose = [&](const MappedExtent& x, uint64_t from, uint64_t to) {  // blocks [from, to) of x go
    if (x.state == ExtentState::kData) *data_delta -= static_cast<int64_t>(to - from);
  };
  const auto L = static_cast<int64_t>(layer);
  std::vector<MappedExtent> remnants;  // right-hand parts of cut extents

  // An extent starting before `start` that reaches into the range.
  left_overlap_.bind(1, L).bind(2, static_cast<int64_t>(start));
  Status err;
  if (left_overlap_.step(&err)) {
    MappedExtent left = read_extent(left_overlap_);
    left_overlap_.reset();
    const uint64_t left_end = left.lba + left.nblocks;
    if (left_end > start) {
      lose(left, start, std::min(left_end, end));
      if (left_end > end) remnants.push_back(tail_of(left, end));
      shrink_extent_.bind(1, L).bind(2, static_cast<int64_t>(left.lba)).bind(3, static_cast<int64_t>(start - left.lba));
      PBD_RETURN_IF_ERROR(shrink_extent_.exec());
    }
  } else {
    left_overlap_.reset();
    PBD_RETURN_IF_ERROR(err);
  }

  // Extents starting inside the range: delete, keeping any part past `end`.
  std::vector<MappedExtent> inner;
  inner_overlap_.bind(1, L).bind(2, static_cast<int64_t>(start)).bind(3, static_cast<int64_t>(end));
  while (inner_overlap_.step(&err)) inner.push_back(read_extent(inner_overlap_));
  inner_overlap_.reset();
  PBD_RETURN_IF_ERROR(err);
  for (const auto& x : inner) {
    lose(x, x.lba, std::min(x.lba + x.nblocks, end));
    if (x.lba + x.nblocks > end) remnants.push_back(tail_of(x, end));
    delete_extent_.bind(1, L).bind(2, static_cast<int64_t>(x.lba));
    PBD_RETURN_IF_ERROR(delete_extent_.exec());
  }
  for (const auto& r : remnants) PBD_RETURN_IF_ERROR(insert_extent(layer, r));
  if (put.state == ExtentState::kData) *data_delta += static_cast<int64_t>(put.nblocks);
  return insert_extent(layer, put);
}

Status Index::overlay_rows(uint64_t layer, const std::vector<MappedExtent>& rows) {
  MutexLock lock(&mu_);
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  int64_t data_delta = 0;
  for (const auto& x : rows) PBD_RETURN_IF_ERROR(put_extent(layer, x, &data_delta));
  return txn.commit();
}

Status Index::apply_segment(const SegmentFooter& footer, uint64_t object_bytes, uint64_t* data_blocks) {
  MutexLock lock(&mu_);
  // No fsync for this commit (see index.h); FULL again for everyone else.
  PBD_RETURN_IF_ERROR(db_->exec("PRAGMA synchronous=NORMAL"));
  struct RestoreFull {
    Db* db;
    ~RestoreFull() { (void)db->exec("PRAGMA synchronous=FULL"); }
  } restore_full{db_.get()};
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  int64_t data_delta = 0;
  for (const auto& e : footer.entries) {
    PBD_RETURN_IF_ERROR(apply_entry(footer.layer, footer.seq, e, footer.frames, &data_delta));
  }
  PBD_RETURN_IF_ERROR(add_data_blocks_.bind(1, static_cast<int64_t>(footer.layer)).bind(2, data_delta).exec());
  insert_segment_.bind(1, static_cast<int64_t>(footer.seq))
      .bind(2, static_cast<int64_t>(footer.layer))
      .bind(3, static_cast<int64_t>(object_bytes))
      .bind(4, static_cast<int64_t>(footer.data_bytes()))
      .bind(5, static_cast<int64_t>(footer.entries.size()))
      .bind(6, footer.created_unix_ms);
  PBD_RETURN_IF_ERROR(insert_segment_.exec());
  PBD_RETURN_IF_ERROR(raise_applied_seq_.bind(1, static_cast<int64_t>(footer.seq)).exec());
  if (footer.max_wseq > 0) PBD_RETURN_IF_ERROR(raise_max_wseq_.bind(1, static_cast<int64_t>(footer.max_wseq)).exec());
  if (data_blocks != nullptr) {
    auto s = db_->prepare("SELECT data_blocks FROM layers WHERE id=?1");
    if (!s.ok()) return s.status();
    s->bind(1, static_cast<int64_t>(footer.layer));
    Status err;
    *data_blocks = s->step(&err) ? static_cast<uint64_t>(s->col_int(0)) : 0;
    PBD_RETURN_IF_ERROR(err);
  }
  return txn.commit().With("commit segment " + std::to_string(footer.seq));
}

Status Index::scan_layer(uint64_t layer, const std::function<void(const MappedExtent&)>& fn) {
  MutexLock lock(&mu_);
  auto s = db_->prepare(std::string("SELECT ") + kExtentColumns + " FROM extents WHERE layer=?1 ORDER BY lba");
  if (!s.ok()) return s.status();
  s->bind(1, static_cast<int64_t>(layer));
  Status err;
  while (s->step(&err)) fn(read_extent(*s));
  return err;
}

Result<std::vector<LayerRecord>> Index::list_layers() {
  MutexLock lock(&mu_);
  auto s = db_->prepare("SELECT id, COALESCE(parent, 0), created_ms, data_blocks FROM layers ORDER BY id");
  if (!s.ok()) return s.status();
  std::vector<LayerRecord> out;
  Status err;
  while (s->step(&err)) {
    out.push_back({static_cast<uint64_t>(s->col_int(0)), static_cast<uint64_t>(s->col_int(1)), s->col_int(2),
                   static_cast<uint64_t>(s->col_int(3))});
  }
  if (!err.ok()) return err;
  return out;
}

Result<std::vector<RootRecord>> Index::list_roots() {
  MutexLock lock(&mu_);
  auto s =
      db_->prepare("SELECT name, layer, kind, COALESCE(uuid, ''), created_ms FROM roots ORDER BY created_ms, name");
  if (!s.ok()) return s.status();
  std::vector<RootRecord> out;
  Status err;
  while (s->step(&err)) {
    out.push_back(
        {s->col_text(0), static_cast<uint64_t>(s->col_int(1)), s->col_text(2), s->col_text(3), s->col_int(4)});
  }
  if (!err.ok()) return err;
  return out;
}

Result<std::optional<RootRecord>> Index::find_root(const std::string& name) {
  MutexLock lock(&mu_);
  auto s = db_->prepare("SELECT name, layer, kind, COALESCE(uuid, ''), created_ms FROM roots WHERE name = ?1");
  if (!s.ok()) return s.status();
  s->bind(1, name);
  Status err;
  std::optional<RootRecord> out;
  if (s->step(&err)) {
    out =
        RootRecord{s->col_text(0), static_cast<uint64_t>(s->col_int(1)), s->col_text(2), s->col_text(3), s->col_int(4)};
  }
  if (!err.ok()) return err;
  return out;
}

namespace {

Status insert_root(Db* db, const RootRecord& r) {
  auto s = db->prepare("INSERT INTO roots(name, layer, kind, uuid, created_ms) VALUES(?1, ?2, ?3, ?4, ?5)");
  if (!s.ok()) return s.status();
  s->bind(1, r.name).bind(2, static_cast<int64_t>(r.layer)).bind(3, r.kind).bind(4, r.uuid).bind(5, r.created_unix_ms);
  Status st = s->exec();
  if (!st.ok() && st.message().find("UNIQUE") != std::string::npos) {
    return Status::AlreadyExists("a snapshot named '" + r.name + "' already exists");
  }
  return st;
}

Status insert_layer(Db* db, uint64_t id, uint64_t parent, int64_t now_ms) {
  auto s = db->prepare("INSERT INTO layers(id, parent, created_ms) VALUES(?1, ?2, ?3)");
  if (!s.ok()) return s.status();
  s->bind(1, static_cast<int64_t>(id));
  if (parent == 0) {
    s->bind_null(2);
  } else {
    s->bind(2, static_cast<int64_t>(parent));
  }
  s->bind(3, now_ms);
  return s->exec();
}

Status move_live(Db* db, uint64_t layer) {
  auto s = db->prepare("UPDATE roots SET layer=?1 WHERE name='live'");
  if (!s.ok()) return s.status();
  s->bind(1, static_cast<int64_t>(layer));
  return s->exec();
}

Result<uint64_t> current_live(Db* db) {
  auto s = db->prepare("SELECT layer FROM roots WHERE name='live'");
  if (!s.ok()) return s.status();
  Status err;
  if (s->step(&err)) return static_cast<uint64_t>(s->col_int(0));
  if (!err.ok()) return err;
  return Status::Corruption("the index has no live root");
}

}  // namespace

Status Index::create_snapshot(const RootRecord& snapshot, uint64_t new_live, int64_t now_ms) {
  MutexLock lock(&mu_);
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  auto live = current_live(db_.get());
  if (!live.ok()) return live.status();
  if (*live != snapshot.layer) return Status::Corruption("snapshot of a layer that is not live");
  PBD_RETURN_IF_ERROR(insert_root(db_.get(), snapshot));
  PBD_RETURN_IF_ERROR(insert_layer(db_.get(), new_live, snapshot.layer, now_ms));
  PBD_RETURN_IF_ERROR(move_live(db_.get(), new_live));
  return txn.commit();
}

Status Index::restore_snapshot(uint64_t from_layer, uint64_t new_live, const std::optional<RootRecord>& keep_current,
                               int64_t now_ms) {
  MutexLock lock(&mu_);
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  if (keep_current) PBD_RETURN_IF_ERROR(insert_root(db_.get(), *keep_current));
  PBD_RETURN_IF_ERROR(insert_layer(db_.get(), new_live, from_layer, now_ms));
  PBD_RETURN_IF_ERROR(move_live(db_.get(), new_live));
  return txn.commit();
}

Status Index::delete_snapshot(const std::string& name) {
  MutexLock lock(&mu_);
  auto s = db_->prepare("DELETE FROM roots WHERE name=?1 AND kind='snapshot'");
  if (!s.ok()) return s.status();
  s->bind(1, name);
  PBD_RETURN_IF_ERROR(s->exec());
  if (sqlite3_changes(db_->raw()) == 0) return Status::NotFound("no snapshot named '" + name + "'");
  return Status::OK();
}

Status Index::replace_roots(const std::vector<LayerRecord>& layers, const std::vector<RootRecord>& roots) {
  MutexLock lock(&mu_);
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  PBD_RETURN_IF_ERROR(db_->exec("DELETE FROM roots; DELETE FROM layers;"));
  for (const auto& l : layers) PBD_RETURN_IF_ERROR(insert_layer(db_.get(), l.id, l.parent, l.created_unix_ms));
  for (const auto& r : roots) PBD_RETURN_IF_ERROR(insert_root(db_.get(), r));
  PBD_RETURN_IF_ERROR(db_->exec(kRecountDataBlocks));
  return txn.commit();
}

Result<std::vector<SegmentRecord>> Index::list_segments() {
  MutexLock lock(&mu_);
  auto s = db_->prepare("SELECT seq, layer, bytes, data_bytes, doomed_ms FROM segments ORDER BY seq");
  if (!s.ok()) return s.status();
  std::vector<SegmentRecord> out;
  Status err;
  while (s->step(&err)) {
    out.push_back({static_cast<uint64_t>(s->col_int(0)), static_cast<uint64_t>(s->col_int(1)),
                   static_cast<uint64_t>(s->col_int(2)), static_cast<uint64_t>(s->col_int(3)), s->col_int(4)});
  }
  if (!err.ok()) return err;
  return out;
}

Status Index::set_doomed(uint64_t seq, int64_t doomed_ms) { return set_doomed({{seq, doomed_ms}}); }

Status Index::set_doomed(const std::vector<std::pair<uint64_t, int64_t>>& marks) {
  if (marks.empty()) return Status::OK();
  MutexLock lock(&mu_);
  auto s = db_->prepare("UPDATE segments SET doomed_ms=?2 WHERE seq=?1");
  if (!s.ok()) return s.status();
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  for (const auto& [seq, doomed_ms] : marks) {
    s->bind(1, static_cast<int64_t>(seq)).bind(2, doomed_ms);
    PBD_RETURN_IF_ERROR(s->exec());
  }
  return txn.commit();
}

Status Index::forget_segment(uint64_t seq) {
  MutexLock lock(&mu_);
  auto s = db_->prepare("DELETE FROM segments WHERE seq=?1");
  if (!s.ok()) return s.status();
  s->bind(1, static_cast<int64_t>(seq));
  return s->exec();
}

Status Index::replace_layer(uint64_t layer, uint64_t parent, const std::vector<MappedExtent>& extents,
                            const std::vector<uint64_t>& drop_layers) {
  MutexLock lock(&mu_);
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  const std::string id = std::to_string(layer);
  PBD_RETURN_IF_ERROR(db_->exec("DELETE FROM extents WHERE layer=" + id));
  uint64_t data_blocks = 0;
  for (const auto& x : extents) {
    PBD_RETURN_IF_ERROR(insert_extent(layer, x));
    if (x.state == ExtentState::kData) data_blocks += x.nblocks;
  }
  PBD_RETURN_IF_ERROR(
      db_->exec("UPDATE layers SET parent=" + (parent == 0 ? std::string("NULL") : std::to_string(parent)) +
                ", data_blocks=" + std::to_string(data_blocks) + " WHERE id=" + id));
  for (uint64_t drop : drop_layers) {
    const std::string gone = std::to_string(drop);
    PBD_RETURN_IF_ERROR(db_->exec("DELETE FROM extents WHERE layer=" + gone + "; DELETE FROM layers WHERE id=" + gone));
  }
  return txn.commit();
}

Status Index::drop_layer(uint64_t layer) {
  MutexLock lock(&mu_);
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  const std::string id = std::to_string(layer);
  PBD_RETURN_IF_ERROR(db_->exec("DELETE FROM extents WHERE layer=" + id + "; DELETE FROM layers WHERE id=" + id));
  return txn.commit();
}

Status Index::copy_to(const std::string& path) {
  MutexLock lock(&mu_);
  auto s = db_->prepare("VACUUM INTO ?1");
  if (!s.ok()) return s.status();
  s->bind(1, path);
  return s->exec().With("copy index to " + path);
}

Result<IndexStats> Index::stats() {
  MutexLock lock(&mu_);
  IndexStats out;
  auto s = db_->prepare(
      "SELECT COUNT(*), COALESCE(SUM(bytes),0), COALESCE(SUM(data_bytes),0), (SELECT COUNT(*) FROM extents) FROM "
      "segments");
  if (!s.ok()) return s.status();
  Status err;
  if (s->step(&err)) {
    out.segments = static_cast<uint64_t>(s->col_int(0));
    out.bytes_stored = static_cast<uint64_t>(s->col_int(1));
    out.data_bytes = static_cast<uint64_t>(s->col_int(2));
    out.extents = static_cast<uint64_t>(s->col_int(3));
  }
  if (!err.ok()) return err;
  return out;
}

Status Index::reset() {
  MutexLock lock(&mu_);
  Txn txn(db_.get());
  PBD_RETURN_IF_ERROR(txn.begin());
  PBD_RETURN_IF_ERROR(
      db_->exec("DELETE FROM extents; DELETE FROM segments; DELETE FROM roots; DELETE FROM layers; DELETE FROM meta;"));
  return txn.commit();
}

}  // namespace portalbd::meta
