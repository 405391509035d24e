// Thin RAII wrappers over the SQLite C API: a connection and prepared
// statements, returning Status instead of result codes.
// Thread-safety: a Db and its Stmts belong to one thread at a time; the
// owner (meta::Index) serializes access with its own mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "src/util/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace portalbd::meta {

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Stmt();
  Stmt(Stmt&& o) noexcept;
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binds are 1-based, like SQLite's.
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, const std::string& v);
  Stmt& bind_null(int i);
  // Advances: true with a row, false when done; errors in *st.
  bool step(Status* st);
  // Runs to completion (for statements without rows).
  Status exec();
  int64_t col_int(int i) const;
  std::string col_text(int i) const;
  bool col_is_null(int i) const;
  // Makes the statement reusable (keeps bindings replaced by the next bind).
  void reset();

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

class Db {
 public:
  static Result<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status exec(const std::string& sql);
  Result<Stmt> prepare(const std::string& sql);
  sqlite3* raw() const { return db_; }
  std::string last_error() const;

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace portalbd::meta
