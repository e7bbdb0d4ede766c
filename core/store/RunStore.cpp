// RunStore over SQLite. The schema is the chain of migrations in kMigrations (a new file runs
// all of them, an older file the missing ones), each frozen once released, all in one
// transaction with foreign keys off and a foreign_key_check before COMMIT (SQLite's procedure
// for table rebuilds). Ids use AUTOINCREMENT so a deleted run's id is never handed out again
// (the GUI and cached series ids may still hold it). Metric points are written as chunks (v3):
// one row per series and flush holding the packed points, keyed (series_id, seq); points written
// by v2 stay in the (series_id, step) keyed points table and are read first. The file runs past
// 800 lines because the frozen migration SQL (about 140 lines) belongs beside the code that runs
// it, and the chunk codec is a few lines used only here.
#include "core/store/RunStore.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <unordered_map>

#include "core/base/BuildInfo.h"
#include "core/base/Error.h"
#include "core/store/Sqlite.h"

namespace lathe::store {
namespace {

namespace fs = std::filesystem;

constexpr int kApplicationId = 0x4C617468;  // "Lath" in the SQLite header: marks our files

// v1: the first schema (experiments, runs, per-run metric rows, numeric summaries).
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE experiments(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL);
CREATE TABLE runs(
  id INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  config_json TEXT NOT NULL,
  status TEXT NOT NULL,
  device TEXT NOT NULL DEFAULT '',
  created_at REAL NOT NULL,
  started_at REAL,
  ended_at REAL);
CREATE TABLE metrics(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  PRIMARY KEY(run_id, name, step)) WITHOUT ROWID;
CREATE TABLE summaries(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value REAL,
  PRIMARY KEY(run_id, key)) WITHOUT ROWID;
)sql";

// v2: ids never reused; run ownership (host, pid, process start token), hash, code version,
// tags, message; statuses paused/interrupted ('finished' becomes 'done'); named series with
// wall times; text summaries (an untyped column keeps REAL or TEXT); artifacts. points has no
// foreign key: SQLite's per-row check (a statement journal per INSERT) made an insert 2.4x
// dearer; points are only written for a series resolved in the same transaction, and a
// trigger deletes them with their series.
constexpr const char* kMigrateV1ToV2 = R"sql(
ALTER TABLE runs RENAME TO runs_v1;
ALTER TABLE metrics RENAME TO metrics_v1;
ALTER TABLE summaries RENAME TO summaries_v1;
ALTER TABLE experiments RENAME TO experiments_v1;
CREATE TABLE experiments(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL);
CREATE TABLE runs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  config_json TEXT NOT NULL,
  config_hash TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL CHECK (status IN
    ('queued', 'running', 'paused', 'done', 'failed', 'cancelled', 'interrupted')),
  message TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '[]',
  host TEXT NOT NULL DEFAULT '',
  device TEXT NOT NULL DEFAULT '',
  code_version TEXT NOT NULL DEFAULT '',
  owner_pid INTEGER,
  owner_token TEXT,
  created_at REAL NOT NULL,
  started_at REAL,
  ended_at REAL);
CREATE INDEX runs_by_experiment ON runs(experiment_id, id);
CREATE INDEX runs_by_status ON runs(status, id);
CREATE TABLE series(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  UNIQUE(run_id, name));
CREATE TABLE points(
  series_id INTEGER NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  wall_time REAL,
  PRIMARY KEY(series_id, step)) WITHOUT ROWID;
CREATE TRIGGER points_of_deleted_series AFTER DELETE ON series
  BEGIN DELETE FROM points WHERE series_id = old.id; END;
CREATE TABLE summaries(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value,
  PRIMARY KEY(run_id, key)) WITHOUT ROWID;
CREATE TABLE artifacts(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  path TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  hash TEXT NOT NULL,
  step INTEGER,
  created_at REAL NOT NULL);
CREATE INDEX artifacts_by_run ON artifacts(run_id, kind, id);
INSERT INTO experiments(id, name, created_at) SELECT id, name, created_at FROM experiments_v1;
INSERT INTO runs(id, experiment_id, name, config_json, status, message, device, created_at,
                 started_at, ended_at)
  SELECT id, experiment_id, name, config_json,
         CASE WHEN status = 'finished' THEN 'done'
              WHEN status IN ('queued', 'running', 'failed', 'cancelled') THEN status
              ELSE 'failed' END,
         CASE WHEN status IN ('finished', 'queued', 'running', 'failed', 'cancelled') THEN ''
              ELSE 'unknown v1 status ''' || status || '''' END,
         device, created_at, started_at, ended_at
  FROM runs_v1;
INSERT INTO series(run_id, name) SELECT DISTINCT run_id, name FROM metrics_v1 ORDER BY run_id, name;
INSERT INTO points(series_id, step, value, wall_time)
  SELECT s.id, m.step, m.value, NULL FROM metrics_v1 m
  JOIN series s ON s.run_id = m.run_id AND s.name = m.name;
INSERT INTO summaries(run_id, key, value) SELECT run_id, key, value FROM summaries_v1;
DROP TABLE summaries_v1;
DROP TABLE metrics_v1;
DROP TABLE runs_v1;
DROP TABLE experiments_v1;
)sql";

// v3: metric points are written in chunks, one row per series and flush holding the points
// packed (kChunkPointBytes each: i64 step, f64 value, f64 wall time, little-endian), which costs
// a training step a memcpy per point instead of a B-tree insert (about 2 us each). The v2 points
// table stays for the points written before; a series reads both, v2 rows first, and a later
// point of the same step wins.
constexpr const char* kMigrateV2ToV3 = R"sql(
CREATE TABLE chunks(
  series_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  points INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY(series_id, seq)) WITHOUT ROWID;
CREATE TRIGGER chunks_of_deleted_series AFTER DELETE ON series
  BEGIN DELETE FROM chunks WHERE series_id = old.id; END;
)sql";

constexpr size_t kChunkPointBytes = 24;
static_assert(std::endian::native == std::endian::little,
              "the chunk encoding assumes a little-endian host");

// kMigrations[v] takes a database from schema v to v + 1.
constexpr const char* kMigrations[] = {kSchemaV1, kMigrateV1ToV2, kMigrateV2ToV3};
static_assert(std::size(kMigrations) == RunStore::kSchemaVersion);

#define LATHE_RUN_COLUMNS                                                                    \
  "id, experiment_id, name, config_json, config_hash, status, message, tags, host, device, " \
  "code_version, owner_pid, created_at, started_at, ended_at"

constexpr const char* kStatusNames[] = {"queued", "running",   "paused",     "done",
                                        "failed", "cancelled", "interrupted"};

double wallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string hostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::string firstLine(const std::string& file) {
  std::ifstream f(file);
  std::string line;
  std::getline(f, line);
  return line;
}

// Identifies a process across pid reuse: the boot id and the process's start time in clock
// ticks since boot (field 22 of /proc/PID/stat). Empty where /proc cannot tell.
std::string processToken(int64_t pid) {
  static const std::string boot = firstLine("/proc/sys/kernel/random/boot_id");
  const std::string stat = firstLine("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = stat.rfind(')');  // the command name may contain spaces and ')'
  if (boot.empty() || close == std::string::npos) return "";
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return rest ? boot + "/" + field : "";
}

const std::string& selfToken() {
  static const std::string token = processToken(::getpid());
  return token;
}

// Whether the process that owns a run (on this host) still runs.
bool ownerAlive(int64_t pid, const std::string& token) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  if (token.empty()) return true;
  const std::string now = processToken(pid);
  return now.empty() || now == token;
}

int64_t pragmaInt(Database& db, const char* pragma) {
  Statement q = db.prepare(pragma);
  return q.step() ? q.int64(0) : 0;
}

std::string tagsToJson(const std::vector<std::string>& tags) {
  return nlohmann::json(tags).dump();
}

std::vector<std::string> tagsFromJson(std::string_view text, int64_t run_id) {
  if (text == "[]") return {};
  const auto j = nlohmann::json::parse(text, nullptr, false);
  LATHE_CHECK(j.is_array(), "run ", run_id, ": stored tags are not a JSON array: ", text);
  std::vector<std::string> tags;
  for (const auto& t : j) tags.push_back(t.is_string() ? t.get<std::string>() : t.dump());
  return tags;
}

RunRecord readRun(const Statement& q) {
  RunRecord r;
  r.id = q.int64(0);
  r.experiment_id = q.int64(1);
  r.name = q.text(2);
  r.config_json = q.text(3);
  r.config_hash = q.text(4);
  r.status = parseStatus(q.text(5));
  r.message = q.text(6);
  r.tags = tagsFromJson(q.textView(7), r.id);
  r.host = q.text(8);
  r.device = q.text(9);
  r.code_version = q.text(10);
  r.owner_pid = q.isNull(11) ? 0 : q.int64(11);
  r.created_at = q.real(12);
  if (!q.isNull(13)) r.started_at = q.real(13);
  if (!q.isNull(14)) r.ended_at = q.real(14);
  return r;
}

Artifact readArtifact(const Statement& q) {
  Artifact a;
  a.id = q.int64(0);
  a.run_id = q.int64(1);
  a.kind = q.text(2);
  a.path = q.text(3);
  a.bytes = q.int64(4);
  a.hash = q.text(5);
  if (!q.isNull(6)) a.step = q.int64(6);
  a.created_at = q.real(7);
  return a;
}

SummaryValue readSummary(const Statement& q, int col) {
  if (q.isText(col)) return q.text(col);
  return q.real(col);
}

void bindSummary(Statement& q, int i, const SummaryValue& v) {
  if (const double* d = std::get_if<double>(&v)) {
    q.bind(i, *d);
  } else {
    q.bind(i, std::get<std::string>(v));
  }
}

}  // namespace

const char* statusName(Status s) {
  return kStatusNames[static_cast<int>(s)];
}

Status parseStatus(const std::string& name) {
  for (size_t i = 0; i < std::size(kStatusNames); ++i)
    if (name == kStatusNames[i]) return static_cast<Status>(i);
  fail("unknown run status '", name,
       "' (expected queued, running, paused, done, failed, cancelled or interrupted)");
}

struct RunStore::Impl {
  // A (run, series name) pair that appendMetric has seen; series_id is 0 until a flush has
  // created or found its row.
  struct Slot {
    int64_t run_id;
    std::string name;
    int64_t series_id = 0;
  };
  struct Pending {
    uint32_t slot;
    int64_t step;
    double value, wall_time;
  };

  Impl(const std::string& p, OpenMode m) : db(p, openFlags(m)), mode(m), host(hostName()) {}
  static int openFlags(OpenMode m) {
    return (m == OpenMode::readOnly ? SQLITE_OPEN_READONLY
                                    : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
           SQLITE_OPEN_NOMUTEX;
  }

  void open();
  void migrate(int from);
  void markInterrupted();
  void requireWritable(const char* what) const {
    LATHE_CHECK(mode == OpenMode::readWrite, db.path(), ": cannot ", what,
                ": the run database was opened read-only");
  }
  bool runExists(int64_t run_id) {
    return db.prepare("SELECT 1 FROM runs WHERE id = ?1").bind(1, run_id).step();
  }
  void requireRun(int64_t run_id) {
    LATHE_CHECK(runExists(run_id), db.path(), ": run ", run_id, " does not exist");
  }
  uint32_t slotFor(int64_t run_id, const std::string& name);
  void forgetRun(int64_t run_id);
  void flush();

  Database db;
  OpenMode mode;
  std::string host;
  FlushPolicy policy;
  std::vector<Slot> slots;
  std::unordered_map<int64_t, std::unordered_map<std::string, uint32_t>> slot_index;
  std::vector<Pending> pending;
  std::chrono::steady_clock::time_point oldest_pending;
};

void RunStore::Impl::open() {
  const std::string& path = db.path();
  LATHE_CHECK(mode == OpenMode::readOnly || sqlite3_db_readonly(db.handle(), "main") != 1, path,
              ": the run database is read-only (no write permission); fix its permissions, or "
              "pass another --db; it was left unchanged");
  sqlite3_busy_timeout(db.handle(), kBusyTimeoutMs);
  // Up to 16 MiB of page cache (SQLite's default is 2 MiB): listing and comparing 10k runs and
  // appending to many series then re-read few pages.
  db.exec("PRAGMA cache_size = -16384");
  // Reads only until the file is known to be ours: the first read of a non-SQLite file fails
  // here with SQLITE_NOTADB.
  const int64_t app_id = pragmaInt(db, "PRAGMA application_id");
  const int64_t version = pragmaInt(db, "PRAGMA user_version");
  const int64_t objects = pragmaInt(db, "SELECT count(*) FROM sqlite_master");
  const bool empty = app_id == 0 && version == 0 && objects == 0;
  LATHE_CHECK(empty || app_id == kApplicationId, path,
              ": not a Lathe run database (an SQLite file with application_id ", app_id,
              ", expected ", kApplicationId, "); it was left unchanged");
  LATHE_CHECK(version <= kSchemaVersion, path, ": the run database has schema v", version,
              ", newer than this build of Lathe knows (v", kSchemaVersion,
              "); use a newer Lathe; it was left unchanged");
  if (mode == OpenMode::readOnly) {
    LATHE_CHECK(version == kSchemaVersion, path, ": the run database has schema v", version,
                " and needs a migration to v", kSchemaVersion,
                "; open it read-write once (any lathe command that writes runs)");
    db.exec("PRAGMA query_only = ON; PRAGMA foreign_keys = ON");
    return;
  }
  if (version < kSchemaVersion) migrate(static_cast<int>(version));
  {
    Statement wal = db.prepare("PRAGMA journal_mode = WAL");
    LATHE_CHECK(wal.step() && wal.textView(0) == "wal", path,
                ": cannot switch the run database to WAL mode (journal mode '", wal.textView(0),
                "'); is it on a network file system?");
  }
  db.exec("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON");
  markInterrupted();
}

// Runs the missing migrations in one transaction; on any failure the file is as it was.
void RunStore::Impl::migrate(int from) {
  const std::string& path = db.path();
  std::string backup;
  if (from > 0) {  // a copy for going back to an older Lathe build
    backup = path + ".v" + std::to_string(from) + ".bak";
    for (int i = 2; fs::exists(backup); ++i)
      backup = path + ".v" + std::to_string(from) + ".bak." + std::to_string(i);
    Statement q = db.prepare("VACUUM INTO ?1");
    q.bind(1, backup).run();
  }
  try {
    Transaction tx(db, Transaction::kWrite);
    // Another process may have migrated between our first read and the write lock.
    for (int64_t v = pragmaInt(db, "PRAGMA user_version"); v < kSchemaVersion; ++v)
      db.exec(kMigrations[v]);
    Statement check = db.prepare("PRAGMA foreign_key_check");
    if (check.step()) {
      fail("table ", check.textView(0), " row ", check.int64(1), " refers to a missing row of ",
           check.textView(2));
    }
    db.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion) +
            "; PRAGMA application_id = " + std::to_string(kApplicationId));
    tx.commit();
  } catch (const Error& e) {
    std::error_code ec;
    if (!backup.empty()) fs::remove(backup, ec);
    fail(path, ": migrating the run database from schema v", from, " to v", kSchemaVersion,
         " failed; it was left unchanged: ", e.what());
  }
}

// A run left running or paused by a process of this host that is gone (or that no process can
// own: migrated rows) becomes interrupted. Runs of other hosts are left alone.
void RunStore::Impl::markInterrupted() {
  struct Dead {
    int64_t id, pid;
  };
  std::vector<Dead> dead;
  {
    Statement q = db.prepare(
        "SELECT id, owner_pid, owner_token, host FROM runs "
        "WHERE status IN ('running', 'paused') AND (host = ?1 OR owner_pid IS NULL)");
    q.bind(1, host);
    while (q.step()) {
      const int64_t pid = q.isNull(1) ? 0 : q.int64(1);
      if (!ownerAlive(pid, q.text(2))) dead.push_back({q.int64(0), pid});
    }
  }
  if (dead.empty()) return;
  Transaction tx(db, Transaction::kWrite);
  for (const Dead& d : dead) {
    Statement u = db.prepare(
        "UPDATE runs SET status = 'interrupted', ended_at = ?2, message = ?3 "
        "WHERE id = ?1 AND status IN ('running', 'paused') AND owner_pid IS ?4");
    u.bind(1, d.id).bind(2, wallNow());
    u.bind(3, d.pid ? "process " + std::to_string(d.pid) + " on " + host +
                          " ended while the run was active; resume it from its last checkpoint"
                    : std::string("no process owns this run (migrated from an older schema)"));
    if (d.pid) u.bind(4, d.pid);  // else unbound: NULL
    u.run();
  }
  tx.commit();
}

uint32_t RunStore::Impl::slotFor(int64_t run_id, const std::string& name) {
  if (auto run = slot_index.find(run_id); run != slot_index.end()) {
    if (auto it = run->second.find(name); it != run->second.end()) return it->second;
  }
  requireRun(run_id);
  LATHE_CHECK(!name.empty(), db.path(), ": run ", run_id, ": a metric series needs a name");
  slots.push_back({run_id, name, 0});
  const auto slot = static_cast<uint32_t>(slots.size() - 1);
  slot_index[run_id].emplace(name, slot);
  return slot;
}

void RunStore::Impl::forgetRun(int64_t run_id) {
  auto it = slot_index.find(run_id);
  if (it == slot_index.end()) return;
  for (const auto& [name, slot] : it->second) slots[slot].series_id = -1;
  slot_index.erase(it);
  std::erase_if(pending, [&](const Pending& p) { return slots[p.slot].series_id < 0; });
  if (slot_index.empty() && pending.empty()) slots.clear();
}

void RunStore::Impl::flush() {
  if (pending.empty()) return;
  requireWritable("write metric points");
  // Grouped by series in append order: each series' rows go to the end of its key range in turn
  // rather than interleaving across ranges, and a later duplicate step still wins.
  std::stable_sort(pending.begin(), pending.end(),
                   [](const Pending& a, const Pending& b) { return a.slot < b.slot; });
  std::vector<std::pair<uint32_t, int64_t>> resolved;  // series ids found or created here
  std::vector<int64_t> gone;  // runs deleted (here or by another connection) since buffering
  {
    Transaction tx(db, Transaction::kWrite);
    Statement insert =
        db.prepare("INSERT INTO chunks(series_id, seq, points, data) VALUES(?1, ?2, ?3, ?4)");
    std::vector<unsigned char> blob;
    for (size_t i = 0; i < pending.size();) {
      const uint32_t s = pending[i].slot;
      size_t end = i;
      while (end < pending.size() && pending[end].slot == s) ++end;
      const Slot& slot = slots[s];
      int64_t series_id = slot.series_id;
      if (!runExists(slot.run_id)) {
        gone.push_back(slot.run_id);
        i = end;
        continue;
      }
      if (series_id == 0) {
        db.prepare("INSERT OR IGNORE INTO series(run_id, name) VALUES(?1, ?2)")
            .bind(1, slot.run_id)
            .bind(2, slot.name)
            .run();
        Statement q = db.prepare("SELECT id FROM series WHERE run_id = ?1 AND name = ?2");
        q.bind(1, slot.run_id).bind(2, slot.name).step();
        series_id = q.int64(0);
        resolved.emplace_back(s, series_id);
      }
      // The next seq is re-read in every transaction: another connection may have added
      // chunks to the series since (a resumed run in a new process, say).
      Statement next =
          db.prepare("SELECT coalesce(max(seq) + 1, 0) FROM chunks WHERE series_id = ?1");
      next.bind(1, series_id).step();
      const int64_t seq = next.int64(0);
      blob.resize((end - i) * kChunkPointBytes);
      unsigned char* out = blob.data();
      for (; i < end; ++i, out += kChunkPointBytes) {
        const Pending& p = pending[i];
        std::memcpy(out, &p.step, 8);
        std::memcpy(out + 8, &p.value, 8);
        std::memcpy(out + 16, &p.wall_time, 8);
      }
      insert.bind(1, series_id)
          .bind(2, seq)
          .bind(3, static_cast<int64_t>(blob.size() / kChunkPointBytes))
          .bindBlob(4, blob.data(), blob.size())
          .run();
    }
    tx.commit();
  }
  for (const auto& [s, id] : resolved) slots[s].series_id = id;
  pending.clear();
  for (int64_t run : gone) forgetRun(run);
}

RunStore::RunStore(const std::string& path, OpenMode mode) {
  LATHE_CHECK(!path.empty(), "the run database path is empty");
  if (mode == OpenMode::readWrite) {
    const fs::path dir = fs::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty()) fs::create_directories(dir, ec);
    LATHE_CHECK(!ec, path, ": cannot create the directory ", dir.string(), ": ", ec.message());
  } else {
    LATHE_CHECK(fs::exists(path), path, ": the run database does not exist");
  }
  impl_ = std::make_unique<Impl>(path, mode);
  impl_->open();
}

RunStore::~RunStore() {
  if (!impl_ || impl_->pending.empty()) return;
  try {
    impl_->flush();
  } catch (const Error& e) {
    std::cerr << "lathe: " << e.what() << " (" << impl_->pending.size()
              << " metric points were not saved)\n";
  }
}

RunStore::RunStore(RunStore&&) noexcept = default;
RunStore& RunStore::operator=(RunStore&&) noexcept = default;

std::string RunStore::defaultPath() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg && xdg[0] == '/') return (fs::path(xdg) / "lathe" / "runs.db").string();
  const char* home = std::getenv("HOME");
  if (!home || !home[0]) {
    const passwd* pw = getpwuid(getuid());
    home = pw ? pw->pw_dir : nullptr;
  }
  LATHE_CHECK(home && home[0],
              "cannot find the default run database: neither XDG_DATA_HOME "
              "nor HOME is set; pass --db");
  return (fs::path(home) / ".local" / "share" / "lathe" / "runs.db").string();
}

const std::string& RunStore::path() const {
  return impl_->db.path();
}

int64_t RunStore::ensureExperiment(const std::string& name) {
  LATHE_CHECK(!name.empty(), impl_->db.path(), ": an experiment needs a name");
  Database& db = impl_->db;
  auto find = [&]() -> int64_t {
    Statement q = db.prepare("SELECT id FROM experiments WHERE name = ?1");
    return q.bind(1, name).step() ? q.int64(0) : 0;
  };
  if (const int64_t id = find()) return id;
  impl_->requireWritable("create an experiment");
  db.prepare("INSERT OR IGNORE INTO experiments(name, created_at) VALUES(?1, ?2)")
      .bind(1, name)
      .bind(2, wallNow())
      .run();
  return find();
}

std::vector<Experiment> RunStore::experiments() {
  Statement q = impl_->db.prepare(
      "SELECT id, name, created_at, "
      "(SELECT count(*) FROM runs WHERE runs.experiment_id = experiments.id) "
      "FROM experiments ORDER BY name");
  std::vector<Experiment> out;
  while (q.step()) out.push_back({q.int64(0), q.text(1), q.real(2), q.int64(3)});
  return out;
}

int64_t RunStore::createRun(const RunRecord& run) {
  Database& db = impl_->db;
  impl_->requireWritable("create a run");
  LATHE_CHECK(!run.name.empty(), db.path(), ": a run needs a name");
  LATHE_CHECK(nlohmann::json::accept(run.config_json), db.path(), ": run '", run.name,
              "': config_json is not valid JSON");
  LATHE_CHECK(
      db.prepare("SELECT 1 FROM experiments WHERE id = ?1").bind(1, run.experiment_id).step(),
      db.path(), ": run '", run.name, "': experiment ", run.experiment_id, " does not exist");
  const bool owned = run.status == Status::running || run.status == Status::paused;
  const double now = wallNow();
  Statement q = db.prepare(
      "INSERT INTO runs(experiment_id, name, config_json, config_hash, status, message, tags, "
      "host, device, code_version, owner_pid, owner_token, created_at, started_at, ended_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
  q.bind(1, run.experiment_id).bind(2, run.name).bind(3, run.config_json);
  q.bind(4, run.config_hash).bind(5, statusName(run.status)).bind(6, run.message);
  q.bind(7, tagsToJson(run.tags)).bind(8, run.host.empty() ? impl_->host : run.host);
  q.bind(9, run.device).bind(10, run.code_version.empty() ? version() : run.code_version);
  if (owned) q.bind(11, static_cast<int64_t>(::getpid())).bind(12, selfToken());
  q.bind(13, now);
  if (run.started_at) {
    q.bind(14, *run.started_at);
  } else if (owned) {
    q.bind(14, now);
  }
  if (run.ended_at) q.bind(15, *run.ended_at);
  q.run();
  return db.lastInsertRowid();
}

void RunStore::setStatus(int64_t run_id, Status status, const std::string& message) {
  Database& db = impl_->db;
  impl_->requireWritable("set a run's status");
  impl_->flush();
  const bool owned = status == Status::running || status == Status::paused;
  Transaction tx(db, Transaction::kWrite);
  {
    Statement q = db.prepare("SELECT status, owner_pid, owner_token, host FROM runs WHERE id = ?1");
    LATHE_CHECK(q.bind(1, run_id).step(), db.path(), ": run ", run_id, " does not exist");
    const Status cur = parseStatus(q.text(0));
    const int64_t pid = q.isNull(1) ? 0 : q.int64(1);
    // Two processes must not both run one run; ending it is always allowed.
    const bool taken = owned && (cur == Status::running || cur == Status::paused) &&
                       pid != ::getpid() && q.textView(3) == impl_->host &&
                       ownerAlive(pid, q.text(2));
    LATHE_CHECK(!taken, db.path(), ": run ", run_id, " is already ", statusName(cur),
                " in process ", pid, " on ", q.textView(3));
  }
  const double now = wallNow();
  if (owned) {
    Statement q = db.prepare(
        "UPDATE runs SET status = ?2, message = ?3, host = ?4, owner_pid = ?5, "
        "owner_token = ?6, started_at = COALESCE(started_at, ?7), ended_at = NULL WHERE id = ?1");
    q.bind(1, run_id).bind(2, statusName(status)).bind(3, message).bind(4, impl_->host);
    q.bind(5, static_cast<int64_t>(::getpid())).bind(6, selfToken()).bind(7, now);
    q.run();
  } else if (status == Status::queued) {
    db.prepare("UPDATE runs SET status = ?2, message = ?3, ended_at = NULL WHERE id = ?1")
        .bind(1, run_id)
        .bind(2, statusName(status))
        .bind(3, message)
        .run();
  } else {
    db.prepare("UPDATE runs SET status = ?2, message = ?3, ended_at = ?4 WHERE id = ?1")
        .bind(1, run_id)
        .bind(2, statusName(status))
        .bind(3, message)
        .bind(4, now)
        .run();
  }
  tx.commit();
  if (!owned && status != Status::queued) impl_->forgetRun(run_id);  // keeps the cache small
}

RunRecord RunStore::getRun(int64_t run_id) {
  Statement q = impl_->db.prepare("SELECT " LATHE_RUN_COLUMNS " FROM runs WHERE id = ?1");
  LATHE_CHECK(q.bind(1, run_id).step(), impl_->db.path(), ": run ", run_id, " does not exist");
  return readRun(q);
}

std::vector<RunRecord> RunStore::listRuns(const RunFilter& filter) {
#define LATHE_RUN_FILTER                                                                \
  "SELECT " LATHE_RUN_COLUMNS                                                           \
  " FROM runs WHERE (?1 IS NULL OR experiment_id = ?1) AND (?2 IS NULL OR status = ?2)" \
  " AND (?3 IS NULL OR instr(name, ?3) > 0)"                                            \
  " AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ?4))"
  Statement q =
      impl_->db.prepare(filter.newest_first ? LATHE_RUN_FILTER " ORDER BY id DESC LIMIT ?5"
                                            : LATHE_RUN_FILTER " ORDER BY id ASC LIMIT ?5");
#undef LATHE_RUN_FILTER
  if (filter.experiment_id) q.bind(1, *filter.experiment_id);
  if (filter.status) q.bind(2, statusName(*filter.status));
  if (!filter.name_contains.empty()) q.bind(3, filter.name_contains);
  if (!filter.tag.empty()) q.bind(4, filter.tag);
  q.bind(5, filter.limit > 0 ? filter.limit : int64_t{-1});
  std::vector<RunRecord> out;
  while (q.step()) out.push_back(readRun(q));
  return out;
}

void RunStore::deleteRun(int64_t run_id) {
  Database& db = impl_->db;
  impl_->requireWritable("delete a run");
  impl_->forgetRun(run_id);
  db.prepare("DELETE FROM runs WHERE id = ?1").bind(1, run_id).run();
  LATHE_CHECK(db.changes() == 1, db.path(), ": run ", run_id, " does not exist");
}

void RunStore::renameRun(int64_t run_id, const std::string& name) {
  Database& db = impl_->db;
  impl_->requireWritable("rename a run");
  LATHE_CHECK(!name.empty(), db.path(), ": run ", run_id, ": a run needs a name");
  db.prepare("UPDATE runs SET name = ?2 WHERE id = ?1").bind(1, run_id).bind(2, name).run();
  LATHE_CHECK(db.changes() == 1, db.path(), ": run ", run_id, " does not exist");
}

void RunStore::appendMetric(int64_t run_id, const std::string& series, int64_t step, double value) {
  appendMetric(run_id, series, step, value, wallNow());
}

void RunStore::appendMetric(int64_t run_id, const std::string& series, int64_t step, double value,
                            double wall_time) {
  Impl& s = *impl_;
  s.requireWritable("append a metric point");
  const uint32_t slot = s.slotFor(run_id, series);
  const auto now = std::chrono::steady_clock::now();
  if (s.pending.empty()) s.oldest_pending = now;
  s.pending.push_back({slot, step, value, wall_time});
  if (s.pending.size() >= s.policy.max_points ||
      std::chrono::duration<double>(now - s.oldest_pending).count() >= s.policy.max_seconds)
    s.flush();
}

void RunStore::flush() {
  impl_->flush();
}

void RunStore::setFlushPolicy(const FlushPolicy& policy) {
  LATHE_CHECK(policy.max_points > 0 && policy.max_seconds >= 0, impl_->db.path(),
              ": a flush policy needs max_points > 0 and max_seconds >= 0");
  impl_->policy = policy;
}

size_t RunStore::bufferedPoints() const {
  return impl_->pending.size();
}

std::vector<MetricPoint> RunStore::series(int64_t run_id, const std::string& name) {
  impl_->flush();
  impl_->requireRun(run_id);
  Statement id = impl_->db.prepare("SELECT id FROM series WHERE run_id = ?1 AND name = ?2");
  id.bind(1, run_id).bind(2, name);
  if (!id.step()) return {};
  const int64_t series_id = id.int64(0);
  std::vector<MetricPoint> out;
  Statement legacy = impl_->db.prepare(
      "SELECT step, value, wall_time FROM points WHERE series_id = ?1 ORDER BY step");
  legacy.bind(1, series_id);
  while (legacy.step()) out.push_back({legacy.int64(0), legacy.real(1), legacy.real(2)});
  Statement chunks =
      impl_->db.prepare("SELECT points, data FROM chunks WHERE series_id = ?1 ORDER BY seq");
  chunks.bind(1, series_id);
  bool ordered = true;
  while (chunks.step()) {
    const int64_t n = chunks.int64(0);
    const std::span<const unsigned char> data = chunks.blob(1);
    LATHE_CHECK(n >= 0 && data.size() == static_cast<size_t>(n) * kChunkPointBytes,
                impl_->db.path(), ": run ", run_id, ", series '", name, "': a chunk of ", n,
                " points holds ", data.size(), " bytes, expected ",
                n * static_cast<int64_t>(kChunkPointBytes), "; the database is corrupt");
    out.reserve(out.size() + static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) {
      MetricPoint p;
      const unsigned char* in = data.data() + k * kChunkPointBytes;
      std::memcpy(&p.step, in, 8);
      std::memcpy(&p.value, in + 8, 8);
      std::memcpy(&p.wall_time, in + 16, 8);
      if (!out.empty() && p.step <= out.back().step) ordered = false;
      out.push_back(p);
    }
  }
  if (!ordered) {
    // Steps written again (a run resumed from an earlier checkpoint): by step, the last
    // written point of a step wins.
    std::stable_sort(out.begin(), out.end(),
                     [](const MetricPoint& a, const MetricPoint& b) { return a.step < b.step; });
    std::vector<MetricPoint> unique;
    unique.reserve(out.size());
    for (const MetricPoint& p : out) {
      if (!unique.empty() && unique.back().step == p.step)
        unique.back() = p;
      else
        unique.push_back(p);
    }
    out = std::move(unique);
  }
  return out;
}

std::vector<std::string> RunStore::seriesNames(int64_t run_id) {
  impl_->flush();
  impl_->requireRun(run_id);
  Statement q = impl_->db.prepare("SELECT name FROM series WHERE run_id = ?1 ORDER BY name");
  q.bind(1, run_id);
  std::vector<std::string> out;
  while (q.step()) out.push_back(q.text(0));
  return out;
}

void RunStore::setSummary(int64_t run_id, const std::string& key, double value) {
  setSummaries(run_id, {{key, value}});
}

void RunStore::setSummary(int64_t run_id, const std::string& key, const std::string& value) {
  setSummaries(run_id, {{key, value}});
}

void RunStore::setSummaries(int64_t run_id, const std::map<std::string, SummaryValue>& values) {
  Database& db = impl_->db;
  impl_->requireWritable("set a summary");
  Transaction tx(db, Transaction::kWrite);
  impl_->requireRun(run_id);
  Statement q =
      db.prepare("INSERT OR REPLACE INTO summaries(run_id, key, value) VALUES(?1, ?2, ?3)");
  for (const auto& [key, value] : values) {
    LATHE_CHECK(!key.empty(), db.path(), ": run ", run_id, ": a summary needs a key");
    q.bind(1, run_id).bind(2, key);
    bindSummary(q, 3, value);
    q.run();
  }
  tx.commit();
}

std::map<std::string, SummaryValue> RunStore::summaries(int64_t run_id) {
  impl_->requireRun(run_id);
  Statement q = impl_->db.prepare("SELECT key, value FROM summaries WHERE run_id = ?1");
  q.bind(1, run_id);
  std::map<std::string, SummaryValue> out;
  while (q.step()) out.emplace(q.text(0), readSummary(q, 1));
  return out;
}

Comparison RunStore::compare(const std::vector<int64_t>& run_ids) {
  Database& db = impl_->db;
  const std::string ids = nlohmann::json(run_ids).dump();
  Comparison c;
  std::unordered_map<int64_t, size_t> row_of;  // run id -> index of its first row in c.runs
  std::vector<std::pair<size_t, SummaryValue>> cells;
  std::vector<std::string> cell_keys;
  Transaction tx(db, Transaction::kRead);  // one snapshot for runs and summaries
  {
    Statement q = db.prepare("SELECT " LATHE_RUN_COLUMNS
                             " FROM runs WHERE id IN (SELECT value FROM json_each(?1))");
    q.bind(1, ids);
    std::vector<RunRecord> found;
    while (q.step()) found.push_back(readRun(q));
    std::unordered_map<int64_t, size_t> index;
    for (size_t i = 0; i < found.size(); ++i) index.emplace(found[i].id, i);
    c.runs.reserve(run_ids.size());
    for (int64_t id : run_ids) {
      auto it = index.find(id);
      LATHE_CHECK(it != index.end(), db.path(), ": compare: run ", id, " does not exist");
      row_of.emplace(id, c.runs.size());
      c.runs.push_back(found[it->second]);
    }
  }
  std::map<std::string, size_t> key_index;
  {
    Statement q = db.prepare(
        "SELECT run_id, key, value FROM summaries WHERE run_id IN "
        "(SELECT value FROM json_each(?1))");
    q.bind(1, ids);
    while (q.step()) {
      auto [it, added] = key_index.emplace(q.text(1), 0);
      cell_keys.push_back(it->first);
      cells.emplace_back(row_of.at(q.int64(0)), readSummary(q, 2));
    }
  }
  tx.commit();
  for (auto& [key, j] : key_index) {
    j = c.keys.size();
    c.keys.push_back(key);
  }
  std::vector<std::optional<SummaryValue>> empty_row(c.keys.size());
  c.values.assign(c.runs.size(), empty_row);
  for (size_t n = 0; n < cells.size(); ++n)
    c.values[cells[n].first][key_index.at(cell_keys[n])] = std::move(cells[n].second);
  // Repeated ids share the first occurrence's row.
  for (size_t i = 0; i < c.runs.size(); ++i) {
    const size_t first = row_of.at(c.runs[i].id);
    if (first != i) c.values[i] = c.values[first];
  }
  return c;
}

int64_t RunStore::addArtifact(const Artifact& a) {
  Database& db = impl_->db;
  impl_->requireWritable("record an artifact");
  LATHE_CHECK(!a.kind.empty() && !a.path.empty() && a.bytes >= 0, db.path(), ": run ", a.run_id,
              ": an artifact needs a kind, a path and bytes >= 0 (got kind '", a.kind, "', path '",
              a.path, "', bytes ", a.bytes, ")");
  impl_->requireRun(a.run_id);
  Statement q = db.prepare(
      "INSERT INTO artifacts(run_id, kind, path, bytes, hash, step, created_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  q.bind(1, a.run_id).bind(2, a.kind).bind(3, a.path).bind(4, a.bytes).bind(5, a.hash);
  if (a.step) q.bind(6, *a.step);
  q.bind(7, wallNow());
  q.run();
  return db.lastInsertRowid();
}

std::vector<Artifact> RunStore::artifacts(int64_t run_id) {
  impl_->requireRun(run_id);
  Statement q = impl_->db.prepare(
      "SELECT id, run_id, kind, path, bytes, hash, step, created_at FROM artifacts "
      "WHERE run_id = ?1 ORDER BY id");
  q.bind(1, run_id);
  std::vector<Artifact> out;
  while (q.step()) out.push_back(readArtifact(q));
  return out;
}

std::optional<Artifact> RunStore::latestCheckpoint(int64_t run_id) {
  impl_->requireRun(run_id);
  Statement q = impl_->db.prepare(
      "SELECT id, run_id, kind, path, bytes, hash, step, created_at FROM artifacts "
      "WHERE run_id = ?1 AND kind = 'checkpoint' ORDER BY id DESC LIMIT 1");
  q.bind(1, run_id);
  if (!q.step()) return std::nullopt;
  return readArtifact(q);
}

#undef LATHE_RUN_COLUMNS

}  // namespace lathe::store
