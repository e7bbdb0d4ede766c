// SQLite RAII wrappers; see Sqlite.h. Error hints are keyed on the primary result code, so an
// extended code (SQLITE_IOERR_WRITE, SQLITE_CORRUPT_INDEX, ...) gets its family's hint.
#include "core/store/Sqlite.h"

#include <cmath>
#include <limits>

#include "core/base/Error.h"

namespace lathe::store {
namespace {

const char* hintFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return "the file is not a valid SQLite database or is damaged; it was left unchanged: "
             "move it away, restore a backup or pass another --db";
    case SQLITE_READONLY:
      return "the database is read-only: check the permissions of the file and its directory, "
             "or pass another --db";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "the database stayed locked by another connection past the busy timeout";
    case SQLITE_FULL: return "the disk is full";
    case SQLITE_CANTOPEN:
      return "the file or its directory cannot be opened: check that it exists and its "
             "permissions";
    case SQLITE_IOERR: return "an I/O error occurred";
    default: return nullptr;
  }
}

}  // namespace

Statement::Statement(Database& db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

Statement::~Statement() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Statement& Statement::bind(int i, int64_t v) {
  const int rc = sqlite3_bind_int64(stmt_, i, v);
  if (rc != SQLITE_OK) db_.raise(rc, "binding a parameter");
  return *this;
}

Statement& Statement::bind(int i, double v) {
  const int rc = sqlite3_bind_double(stmt_, i, v);
  if (rc != SQLITE_OK) db_.raise(rc, "binding a parameter");
  return *this;
}

Statement& Statement::bind(int i, std::string_view v) {
  const int rc = sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_.raise(rc, "binding a parameter");
  return *this;
}

Statement& Statement::bindBlob(int i, const void* data, size_t bytes) {
  const int rc = sqlite3_bind_blob64(stmt_, i, data, bytes, SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_.raise(rc, "binding a parameter");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.raise(rc, sqlite3_sql(stmt_));
}

void Statement::run() {
  while (step()) {
  }
  sqlite3_reset(stmt_);  // ready to be bound and run again
}

bool Statement::isNull(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

bool Statement::isText(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_TEXT;
}

int64_t Statement::int64(int col) const {
  return sqlite3_column_int64(stmt_, col);
}

double Statement::real(int col) const {
  if (isNull(col)) return std::numeric_limits<double>::quiet_NaN();
  return sqlite3_column_double(stmt_, col);
}

std::string Statement::text(int col) const {
  return std::string(textView(col));
}

std::span<const unsigned char> Statement::blob(int col) const {
  const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(stmt_, col));
  if (!p) return {};
  return {p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
}

std::string_view Statement::textView(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  if (!p) return {};
  return {p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
}

Database::Database(std::string path, int flags) : path_(std::move(path)) {
  const int rc = sqlite3_open_v2(path_.c_str(), &db_, flags | SQLITE_OPEN_EXRESCODE, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    const char* hint = hintFor(rc);
    fail(path_, ": cannot open the run database: ", msg,
         hint ? std::string(" (") + hint + ")" : "");
  }
}

Database::~Database() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

void Database::exec(const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    sqlite3_free(err);
    raise(rc, sql);
  }
}

Statement Database::prepare(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) raise(rc, std::string("preparing ") + std::string(sql));
    it = cache_.emplace(sql, stmt).first;
  }
  // A statement still stepping belongs to a live Statement: sharing it would corrupt both.
  LATHE_CHECK(!sqlite3_stmt_busy(it->second), path_, ": internal error: statement in use: ", sql);
  return Statement(*this, it->second);
}

int64_t Database::lastInsertRowid() const {
  return sqlite3_last_insert_rowid(db_);
}

int Database::changes() const {
  return sqlite3_changes(db_);
}

void Database::raise(int rc, std::string_view what) const {
  const char* hint = hintFor(rc);
  if (what.size() > 100) what = what.substr(0, 100);
  fail(path_, ": ", what, ": ", db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc),
       hint ? std::string(" (") + hint + ")" : std::string());
}

Transaction::Transaction(Database& db, Kind kind) : db_(db) {
  db_.exec(kind == kWrite ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
}

Transaction::~Transaction() {
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace lathe::store
