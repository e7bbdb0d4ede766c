// A thin RAII layer over the SQLite C API for RunStore: a connection that caches prepared
// statements by their SQL text, a statement handle that resets itself when it goes out of scope
// (so no SELECT keeps a WAL read snapshot open), and a transaction that rolls back unless
// committed. Every failure becomes a lathe::Error naming the database file. Internal to
// core/store; not thread-safe (one Database per thread).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace lathe::store {

class Database;

// A cached prepared statement in use. Bind with 1-based indices, step, read 0-based columns.
// The destructor resets the statement and clears its bindings.
class Statement {
 public:
  Statement(Database& db, sqlite3_stmt* stmt);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, int64_t v);
  Statement& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Statement& bind(int i, double v);  // NaN is stored as NULL (SQLite's rule)
  Statement& bind(int i, std::string_view v);
  Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Statement& bindBlob(int i, const void* data, size_t bytes);  // copied (SQLITE_TRANSIENT)

  // Parameters left unbound are NULL.
  // Advances; true while a row is available, false when done. Throws on error.
  bool step();
  // Steps a statement that returns no rows (INSERT, UPDATE, ...) to its end and resets it, so
  // it can be bound and run again (bindings are kept until rebound).
  void run();

  bool isNull(int col) const;
  bool isText(int col) const;
  int64_t int64(int col) const;
  double real(int col) const;  // NULL reads as NaN
  std::string text(int col) const;
  std::string_view textView(int col) const;            // valid until the next step()
  std::span<const unsigned char> blob(int col) const;  // valid until the next step()

 private:
  Database& db_;
  sqlite3_stmt* stmt_;
};

class Database {
 public:
  // sqlite3_open_v2 with `flags`; throws a lathe::Error naming `path`.
  Database(std::string path, int flags);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  // Runs one or more statements without results.
  void exec(const std::string& sql);
  // The cached statement for `sql` (a string with static storage: its text is the cache key).
  Statement prepare(std::string_view sql);
  int64_t lastInsertRowid() const;
  int changes() const;

  // Throws a lathe::Error for SQLite result `rc`: the path, `what` was being done, SQLite's
  // message and a hint for the user (corrupt file, read-only, locked, disk full).
  [[noreturn]] void raise(int rc, std::string_view what) const;

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string_view, sqlite3_stmt*> cache_;
};

// BEGIN IMMEDIATE (takes the write lock at once, so busy_timeout applies and no deferred
// upgrade can fail) or BEGIN DEFERRED (a consistent read snapshot); rolls back unless commit()ed.
class Transaction {
 public:
  enum Kind { kRead, kWrite };
  Transaction(Database& db, Kind kind);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool open_ = true;
};

}  // namespace lathe::store
