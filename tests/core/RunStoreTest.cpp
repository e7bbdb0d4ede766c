// RunStore: runs, filters and statuses; metric batching (visible to a second connection only
// after a flush, flushed on destruction); interrupted-run detection; migration of the v1
// fixture (tests/data/store/runs_v1.sql); bad files (random bytes, damaged pages, read-only,
// newer schema, foreign SQLite file) rejected with the file byte-identical; cascades; compare.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "core/base/BuildInfo.h"
#include "core/base/Error.h"
#include "core/store/RunStore.h"

namespace lathe::store {
namespace {

namespace fs = std::filesystem;

std::string readBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Raw SQLite access, bypassing RunStore, to build and inspect files.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) ADD_FAILURE() << sqlite3_errmsg(db_);
  }
  ~RawDb() { sqlite3_close(db_); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (err ? err : "?");
      sqlite3_free(err);
    }
  }
  // All result cells of `sql`, each row's cells joined by '|', rows by '\n'.
  std::string query(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return "";
    }
    std::string out;
    while (sqlite3_step(st) == SQLITE_ROW) {
      if (!out.empty()) out += "\n";
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
        out += (c ? "|" : "") + std::string(t ? t : "NULL");
      }
    }
    sqlite3_finalize(st);
    return out;
  }
  int64_t count(const std::string& sql) { return std::stoll(query(sql)); }

 private:
  sqlite3* db_ = nullptr;
};

// A pid that is certainly not running: a child that has exited and been reaped.
int64_t deadPid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

class RunStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "lathe-store-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name = "runs.db") const {
    return (fs::path(dir_) / name).string();
  }
  static RunRecord run(int64_t experiment, const std::string& name,
                       std::vector<std::string> tags = {}) {
    RunRecord r;
    r.experiment_id = experiment;
    r.name = name;
    r.config_json = R"({"model":"mlp","lr":0.001})";
    r.config_hash = "sha256:abc";
    r.device = "cpu";
    r.tags = std::move(tags);
    return r;
  }
  // Expects `fn` to throw a lathe::Error whose message contains the path and every part.
  template <typename Fn>
  static void expectError(Fn fn, const std::string& p, const std::vector<std::string>& parts) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << p;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(p), std::string::npos) << "message does not name the file: " << m;
      for (const auto& part : parts)
        EXPECT_NE(m.find(part), std::string::npos) << "got: " << m << "\nmissing: " << part;
    }
  }
  static std::vector<std::string> names(const std::vector<RunRecord>& runs) {
    std::vector<std::string> out;
    out.reserve(runs.size());
    for (const auto& r : runs) out.push_back(r.name);
    return out;
  }

  std::string dir_;
};

TEST_F(RunStoreTest, CreatesDirectoriesAndSchema) {
  const std::string p = path("nested/deeper/runs.db");
  RunStore store(p);
  EXPECT_EQ(store.path(), p);
  RawDb raw(p);
  EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(RunStore::kSchemaVersion));
  EXPECT_EQ(raw.query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.query("PRAGMA application_id"), "1281455208");
}

TEST_F(RunStoreTest, CreateListAndFilter) {
  RunStore store(path());
  const int64_t mnist = store.ensureExperiment("mnist");
  const int64_t lora = store.ensureExperiment("lora");
  EXPECT_EQ(store.ensureExperiment("mnist"), mnist);
  EXPECT_NE(mnist, lora);

  const int64_t a = store.createRun(run(mnist, "mlp-adamw", {"baseline", "fp32"}));
  const int64_t b = store.createRun(run(mnist, "mlp-sgd", {"baseline"}));
  const int64_t c = store.createRun(run(lora, "gpt-lora-r8", {"lora"}));
  store.setStatus(b, Status::running);
  store.setStatus(c, Status::done);

  const RunRecord ra = store.getRun(a);
  EXPECT_EQ(ra.name, "mlp-adamw");
  EXPECT_EQ(ra.experiment_id, mnist);
  EXPECT_EQ(ra.config_json, R"({"model":"mlp","lr":0.001})");
  EXPECT_EQ(ra.config_hash, "sha256:abc");
  EXPECT_EQ(ra.status, Status::queued);
  EXPECT_EQ(ra.tags, (std::vector<std::string>{"baseline", "fp32"}));
  EXPECT_EQ(ra.device, "cpu");
  EXPECT_EQ(ra.code_version, version());
  EXPECT_FALSE(ra.host.empty());
  EXPECT_FALSE(ra.started_at.has_value());
  EXPECT_GT(ra.created_at, 1.6e9);

  EXPECT_EQ(names(store.listRuns()),
            (std::vector<std::string>{"gpt-lora-r8", "mlp-sgd", "mlp-adamw"}));
  RunFilter f;
  f.newest_first = false;
  EXPECT_EQ(names(store.listRuns(f)),
            (std::vector<std::string>{"mlp-adamw", "mlp-sgd", "gpt-lora-r8"}));
  f = {};
  f.experiment_id = mnist;
  EXPECT_EQ(names(store.listRuns(f)), (std::vector<std::string>{"mlp-sgd", "mlp-adamw"}));
  f = {};
  f.status = Status::running;
  EXPECT_EQ(names(store.listRuns(f)), (std::vector<std::string>{"mlp-sgd"}));
  f = {};
  f.name_contains = "lora";
  EXPECT_EQ(names(store.listRuns(f)), (std::vector<std::string>{"gpt-lora-r8"}));
  f = {};
  f.tag = "baseline";
  EXPECT_EQ(names(store.listRuns(f)), (std::vector<std::string>{"mlp-sgd", "mlp-adamw"}));
  f.tag = "fp";  // whole tags only
  EXPECT_TRUE(store.listRuns(f).empty());
  f = {};
  f.limit = 2;
  EXPECT_EQ(names(store.listRuns(f)), (std::vector<std::string>{"gpt-lora-r8", "mlp-sgd"}));
  f = {};
  f.experiment_id = mnist;
  f.status = Status::queued;
  f.tag = "fp32";
  EXPECT_EQ(names(store.listRuns(f)), (std::vector<std::string>{"mlp-adamw"}));

  const auto ex = store.experiments();
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].name, "lora");
  EXPECT_EQ(ex[0].run_count, 1);
  EXPECT_EQ(ex[1].name, "mnist");
  EXPECT_EQ(ex[1].run_count, 2);
}

TEST_F(RunStoreTest, RejectsBadRuns) {
  RunStore store(path());
  const int64_t e = store.ensureExperiment("e");
  RunRecord bad = run(e, "x");
  bad.config_json = "{not json";
  expectError([&] { store.createRun(bad); }, path(), {"config_json", "not valid JSON"});
  expectError([&] { store.createRun(run(e + 100, "x")); }, path(),
              {"experiment", "does not exist"});
  expectError([&] { store.createRun(run(e, "")); }, path(), {"needs a name"});
  expectError([&] { store.getRun(42); }, path(), {"run 42 does not exist"});
  expectError([&] { store.setStatus(42, Status::done); }, path(), {"run 42 does not exist"});
  expectError([&] { store.appendMetric(42, "loss", 0, 1.0); }, path(), {"run 42"});
  expectError([&] { store.setSummary(42, "acc", 1.0); }, path(), {"run 42"});
  expectError([&] { store.deleteRun(42); }, path(), {"run 42"});
  EXPECT_THROW(parseStatus("finished"), Error);
  EXPECT_EQ(parseStatus("interrupted"), Status::interrupted);
}

TEST_F(RunStoreTest, StatusTimesAndOwner) {
  RunStore store(path());
  const int64_t id = store.createRun(run(store.ensureExperiment("e"), "r"));
  store.setStatus(id, Status::running);
  RunRecord r = store.getRun(id);
  EXPECT_EQ(r.status, Status::running);
  EXPECT_EQ(r.owner_pid, getpid());
  ASSERT_TRUE(r.started_at.has_value());
  EXPECT_FALSE(r.ended_at.has_value());
  const double started = *r.started_at;
  store.setStatus(id, Status::failed, "loss is NaN at step 12");
  r = store.getRun(id);
  EXPECT_EQ(r.status, Status::failed);
  EXPECT_EQ(r.message, "loss is NaN at step 12");
  ASSERT_TRUE(r.ended_at.has_value());
  EXPECT_GE(*r.ended_at, started);
  store.setStatus(id, Status::running);  // resumed: first start kept, end cleared
  r = store.getRun(id);
  EXPECT_EQ(*r.started_at, started);
  EXPECT_FALSE(r.ended_at.has_value());
}

TEST_F(RunStoreTest, MetricsBatchedAndFlushedOnDestruction) {
  RunStore reader(path());
  int64_t id = 0;
  {
    RunStore writer(path());
    writer.setFlushPolicy({10, 1e9});
    id = writer.createRun(run(writer.ensureExperiment("e"), "r"));
    for (int step = 0; step < 9; ++step) writer.appendMetric(id, "loss", step, 1.0 / (step + 1));
    EXPECT_EQ(writer.bufferedPoints(), 9u);
    EXPECT_TRUE(reader.series(id, "loss").empty()) << "points visible before a flush";
    writer.appendMetric(id, "loss", 9, 0.1);
    EXPECT_EQ(writer.bufferedPoints(), 0u);
    EXPECT_EQ(reader.series(id, "loss").size(), 10u);
    writer.appendMetric(id, "accuracy", 0, 0.5, 1700000000.5);
    writer.appendMetric(id, "loss", 10, std::nan(""));
    writer.appendMetric(id, "loss", 3, 7.0);  // a resumed run re-logs step 3
    EXPECT_EQ(reader.series(id, "loss").size(), 10u);
  }
  const auto loss = reader.series(id, "loss");
  ASSERT_EQ(loss.size(), 11u);
  for (size_t i = 0; i < loss.size(); ++i) EXPECT_EQ(loss[i].step, static_cast<int64_t>(i));
  EXPECT_DOUBLE_EQ(loss[0].value, 1.0);
  EXPECT_DOUBLE_EQ(loss[3].value, 7.0);
  EXPECT_TRUE(std::isnan(loss[10].value));
  EXPECT_GT(loss[0].wall_time, 1.6e9);
  const auto acc = reader.series(id, "accuracy");
  ASSERT_EQ(acc.size(), 1u);
  EXPECT_DOUBLE_EQ(acc[0].wall_time, 1700000000.5);
  EXPECT_EQ(reader.seriesNames(id), (std::vector<std::string>{"accuracy", "loss"}));
  EXPECT_TRUE(reader.series(id, "nope").empty());
}

TEST_F(RunStoreTest, MetricsFlushedByTimeAndStatus) {
  RunStore writer(path());
  RunStore reader(path());
  writer.setFlushPolicy({1000000, 0.05});
  const int64_t id = writer.createRun(run(writer.ensureExperiment("e"), "r"));
  writer.appendMetric(id, "loss", 0, 1.0);
  EXPECT_EQ(writer.bufferedPoints(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  writer.appendMetric(id, "loss", 1, 0.9);
  EXPECT_EQ(writer.bufferedPoints(), 0u);
  EXPECT_EQ(reader.series(id, "loss").size(), 2u);
  writer.setFlushPolicy({1000000, 1e9});
  writer.appendMetric(id, "loss", 2, 0.8);
  writer.setStatus(id, Status::done);
  EXPECT_EQ(reader.series(id, "loss").size(), 3u);
  EXPECT_EQ(reader.getRun(id).status, Status::done);
}

TEST_F(RunStoreTest, InterruptedRunsDetectedOnOpen) {
  int64_t mine = 0, dead = 0, reused = 0, other_host = 0;
  const int64_t gone_pid = deadPid();
  {
    RunStore store(path());
    const int64_t e = store.ensureExperiment("e");
    mine = store.createRun(run(e, "mine"));
    dead = store.createRun(run(e, "dead"));
    reused = store.createRun(run(e, "reused-pid"));
    other_host = store.createRun(run(e, "other-host"));
    for (int64_t id : {mine, dead, reused, other_host}) store.setStatus(id, Status::running);
    store.setStatus(dead, Status::paused);
    store.addArtifact({0, dead, "checkpoint", path("ck-100.safetensors"), 1000, "sha256:1", 100});
    store.addArtifact({0, dead, "checkpoint", path("ck-200.safetensors"), 1000, "sha256:2", 200});
    store.addArtifact({0, dead, "export", path("model.onnx"), 500, "sha256:3", {}});
  }
  {
    RawDb raw(path());
    raw.exec("UPDATE runs SET owner_pid = " + std::to_string(gone_pid) + " WHERE id IN (" +
             std::to_string(dead) + ", " + std::to_string(other_host) + ")");
    raw.exec("UPDATE runs SET owner_token = 'another-boot/1' WHERE id = " + std::to_string(reused));
    raw.exec("UPDATE runs SET host = 'elsewhere' WHERE id = " + std::to_string(other_host));
  }
  RunStore store(path());
  EXPECT_EQ(store.getRun(mine).status, Status::running) << "this live process owns it";
  EXPECT_EQ(store.getRun(other_host).status, Status::running) << "cannot judge another host";
  const RunRecord d = store.getRun(dead);
  EXPECT_EQ(d.status, Status::interrupted);
  EXPECT_NE(d.message.find(std::to_string(gone_pid)), std::string::npos) << d.message;
  EXPECT_TRUE(d.ended_at.has_value());
  EXPECT_EQ(store.getRun(reused).status, Status::interrupted) << "pid reused by another process";

  // Resume from the last checkpoint.
  const auto ck = store.latestCheckpoint(dead);
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->step, 200);
  EXPECT_EQ(ck->path, path("ck-200.safetensors"));
  store.setStatus(dead, Status::running);
  EXPECT_EQ(store.getRun(dead).status, Status::running);
  EXPECT_FALSE(store.getRun(dead).ended_at.has_value());
  RunStore again(path());
  EXPECT_EQ(again.getRun(dead).status, Status::running);
}

TEST_F(RunStoreTest, RefusesToTakeARunAnotherLiveProcessOwns) {
  RunStore store(path());
  const int64_t id = store.createRun(run(store.ensureExperiment("e"), "r"));
  store.setStatus(id, Status::running);
  RawDb(path()).exec("UPDATE runs SET owner_pid = " + std::to_string(getppid()) +
                     ", owner_token = NULL WHERE id = " + std::to_string(id));
  expectError([&] { store.setStatus(id, Status::running); }, path(),
              {"already running", std::to_string(getppid())});
  store.setStatus(id, Status::cancelled);  // ending it is always allowed
  EXPECT_EQ(store.getRun(id).status, Status::cancelled);
}

std::string fixture(const std::string& name) {
  return readBytes(std::string(LATHE_TEST_DATA_DIR) + "/store/" + name);
}

TEST_F(RunStoreTest, MigratesV1Database) {
  const std::string sql = fixture("runs_v1.sql");
  ASSERT_FALSE(sql.empty());
  RawDb(path()).exec(sql);
  {
    RunStore store(path());
    RunFilter oldest_first;
    oldest_first.newest_first = false;
    const auto runs = store.listRuns(oldest_first);
    ASSERT_EQ(runs.size(), 5u);
    EXPECT_EQ(runs[0].name, "mlp-adamw");
    EXPECT_EQ(runs[0].status, Status::done);
    EXPECT_EQ(runs[0].config_json, R"({"model":"mlp","optimizer":"adamw","lr":0.001})");
    EXPECT_EQ(*runs[0].started_at, 1700000011.0);
    EXPECT_EQ(runs[1].status, Status::failed);
    EXPECT_EQ(runs[2].status, Status::interrupted) << "v1 'running' rows have no owner";
    EXPECT_EQ(runs[2].device, "cuda:0");
    EXPECT_EQ(runs[3].status, Status::queued);
    EXPECT_EQ(runs[4].status, Status::failed);
    EXPECT_NE(runs[4].message.find("exploded"), std::string::npos);
    EXPECT_EQ(store.seriesNames(1), (std::vector<std::string>{"accuracy", "loss"}));
    const auto loss = store.series(1, "loss");
    ASSERT_EQ(loss.size(), 3u);
    EXPECT_DOUBLE_EQ(loss[2].value, 0.55);
    EXPECT_TRUE(std::isnan(loss[2].wall_time));
    EXPECT_TRUE(std::isnan(store.series(2, "loss").at(1).value));
    EXPECT_EQ(store.series(3, "loss").at(1).step, 10);
    const auto s = store.summaries(1);
    EXPECT_DOUBLE_EQ(std::get<double>(s.at("final_accuracy")), 0.97);
    EXPECT_DOUBLE_EQ(std::get<double>(s.at("params")), 203530);
    // New ids continue after the migrated ones.
    EXPECT_EQ(store.createRun(run(2, "new")), 6);
    const auto ex = store.experiments();
    ASSERT_EQ(ex.size(), 2u);
    EXPECT_EQ(ex[0].name, "gpt-lora");
    EXPECT_EQ(ex[0].run_count, 4);
  }
  // The old file was kept as a backup.
  EXPECT_EQ(RawDb(path() + ".v1.bak").query("PRAGMA user_version"), "1");
  EXPECT_EQ(RawDb(path() + ".v1.bak").count("SELECT count(*) FROM runs"), 5);
  // The migrated schema is the one a new database gets.
  const std::string kSchema = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name";
  { RunStore fresh(path("fresh.db")); }
  EXPECT_EQ(RawDb(path()).query(kSchema), RawDb(path("fresh.db")).query(kSchema));
  EXPECT_EQ(RawDb(path()).query("PRAGMA foreign_key_check"), "");
  { RunStore reopen(path()); }
  EXPECT_FALSE(fs::exists(path() + ".v1.bak.2")) << "a current database is not backed up again";
}

TEST_F(RunStoreTest, FailedMigrationLeavesFileUnchanged) {
  // A v1 file with a metric row of a run that does not exist (v1 never enabled foreign keys).
  RawDb(path()).exec(fixture("runs_v1.sql") + "INSERT INTO metrics VALUES(99, 'loss', 0, 1.0);");
  const std::string before = readBytes(path());
  expectError([&] { RunStore store(path()); }, path(),
              {"migrating", "v1 to v" + std::to_string(RunStore::kSchemaVersion), "left unchanged",
               "missing row"});
  EXPECT_EQ(readBytes(path()), before);
  EXPECT_FALSE(fs::exists(path() + ".v1.bak"));
}

TEST_F(RunStoreTest, RejectsRandomBytesUnchanged) {
  std::mt19937 rng(7);
  std::string junk(size_t{64} << 10, '\0');
  for (char& ch : junk) ch = static_cast<char>(rng());
  writeBytes(path(), junk);
  expectError([&] { RunStore store(path()); }, path(), {"not a valid SQLite database"});
  expectError([&] { RunStore store(path(), OpenMode::readOnly); }, path(),
              {"not a valid SQLite database"});
  EXPECT_EQ(readBytes(path()), junk);
}

TEST_F(RunStoreTest, RejectsDamagedDatabaseUnchanged) {
  {
    RunStore store(path());
    const int64_t e = store.ensureExperiment("e");
    for (int i = 0; i < 200; ++i) {
      const int64_t id = store.createRun(run(e, "run-" + std::to_string(i)));
      store.setSummary(id, "acc", 0.5);
    }
  }
  std::string bytes = readBytes(path());
  ASSERT_GT(bytes.size(), 3 * 4096u);
  std::mt19937 rng(11);
  for (size_t i = 4096; i < bytes.size(); ++i) bytes[i] = static_cast<char>(rng());
  writeBytes(path(), bytes);
  expectError(
      [&] {
        RunStore store(path());
        store.listRuns();
      },
      path(), {"damaged"});
  EXPECT_EQ(readBytes(path()), bytes);
}

// Opens `p` read-write as a user who may not write it: this process, or, as root (which file
// permissions do not stop), a child that drops to nobody. Returns the error message or "opened".
std::string openWithoutWritePermission(const std::string& p) {
  auto attempt = [&]() -> std::string {
    try {
      RunStore store(p);
      return "opened";
    } catch (const Error& e) {
      return e.what();
    }
  };
  if (geteuid() != 0) return attempt();
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const std::string m =
        setgid(65534) == 0 && setuid(65534) == 0 ? attempt() : std::string("setuid failed");
    const ssize_t n = write(fds[1], m.data(), m.size());
    _exit(n == static_cast<ssize_t>(m.size()) ? 0 : 1);
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  return out;
}

TEST_F(RunStoreTest, RejectsReadOnlyFileUnchanged) {
  {
    RunStore store(path());
    store.createRun(run(store.ensureExperiment("e"), "r"));
  }
  const std::string before = readBytes(path());
  fs::permissions(path(), fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  const std::string m = openWithoutWritePermission(path());
  if (m == "setuid failed")
    GTEST_SKIP() << "running as root and cannot drop to an unprivileged user";
  EXPECT_NE(m.find(path()), std::string::npos) << m;
  EXPECT_NE(m.find("read-only"), std::string::npos) << m;
  EXPECT_EQ(readBytes(path()), before);
}

TEST_F(RunStoreTest, ReadOnlyModeReadsAndRefusesWrites) {
  int64_t id = 0;
  {
    RunStore store(path());
    id = store.createRun(run(store.ensureExperiment("e"), "r"));
    store.appendMetric(id, "loss", 0, 1.0);
    store.setSummary(id, "acc", 0.9);
  }
  const std::string before = readBytes(path());
  {
    RunStore ro(path(), OpenMode::readOnly);
    EXPECT_EQ(ro.listRuns().size(), 1u);
    EXPECT_EQ(ro.series(id, "loss").size(), 1u);
    EXPECT_EQ(ro.ensureExperiment("e"), 1);
    expectError([&] { ro.ensureExperiment("new"); }, path(), {"read-only"});
    expectError([&] { ro.createRun(run(1, "x")); }, path(), {"read-only"});
    expectError([&] { ro.appendMetric(id, "loss", 1, 1.0); }, path(), {"read-only"});
    expectError([&] { ro.setStatus(id, Status::done); }, path(), {"read-only"});
    expectError([&] { ro.setSummary(id, "acc", 1.0); }, path(), {"read-only"});
    expectError([&] { ro.deleteRun(id); }, path(), {"read-only"});
  }
  EXPECT_EQ(readBytes(path()), before);
  expectError([&] { RunStore ro(path("missing.db"), OpenMode::readOnly); }, path("missing.db"),
              {"does not exist"});
  EXPECT_FALSE(fs::exists(path("missing.db")));
}

TEST_F(RunStoreTest, RejectsNewerSchemaAndForeignFilesUnchanged) {
  { RunStore store(path()); }
  RawDb(path()).exec("PRAGMA user_version = 99");
  const std::string newer = readBytes(path());
  expectError([&] { RunStore store(path()); }, path(),
              {"schema v99", "newer", "(v" + std::to_string(RunStore::kSchemaVersion) + ")"});
  EXPECT_EQ(readBytes(path()), newer);

  RawDb(path("other.db")).exec("CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)");
  const std::string other = readBytes(path("other.db"));
  expectError([&] { RunStore store(path("other.db")); }, path("other.db"),
              {"not a Lathe run database"});
  EXPECT_EQ(readBytes(path("other.db")), other);
}

TEST_F(RunStoreTest, DeleteRunCascades) {
  RunStore store(path());
  const int64_t e = store.ensureExperiment("e");
  const int64_t gone = store.createRun(run(e, "gone"));
  const int64_t kept = store.createRun(run(e, "kept"));
  for (int64_t id : {gone, kept}) {
    for (int s = 0; s < 5; ++s) {
      store.appendMetric(id, "loss", s, 1.0);
      store.appendMetric(id, "acc", s, 0.5);
    }
    store.setSummaries(id, {{"acc", 0.5}, {"note", std::string("x")}});
    store.addArtifact({0, id, "checkpoint", path("ck"), 10, "sha256:0", 5});
  }
  store.flush();
  store.appendMetric(gone, "loss", 99, 1.0);  // buffered, then dropped with the run
  store.deleteRun(gone);
  EXPECT_EQ(store.bufferedPoints(), 0u);
  expectError([&] { store.getRun(gone); }, path(), {"does not exist"});
  RawDb raw(path());
  const std::string g = std::to_string(gone), k = std::to_string(kept);
  EXPECT_EQ(raw.count("SELECT count(*) FROM series WHERE run_id = " + g), 0);
  EXPECT_EQ(raw.count("SELECT count(*) FROM chunks WHERE series_id NOT IN (SELECT id FROM series)"),
            0);
  EXPECT_EQ(raw.count("SELECT count(*) FROM summaries WHERE run_id = " + g), 0);
  EXPECT_EQ(raw.count("SELECT count(*) FROM artifacts WHERE run_id = " + g), 0);
  EXPECT_EQ(raw.count("SELECT sum(points) FROM chunks"), 10);
  EXPECT_EQ(store.summaries(kept).size(), 2u);
  EXPECT_EQ(store.artifacts(kept).size(), 1u);
  // Ids are never reused: a GUI still holding `gone` cannot reach a new run through it.
  EXPECT_GT(store.createRun(run(e, "next")), kept);
}

TEST_F(RunStoreTest, RenameRunKeepsEverythingElse) {
  RunStore store(path());
  const int64_t e = store.ensureExperiment("e");
  const int64_t id = store.createRun(run(e, "before"));
  const int64_t other = store.createRun(run(e, "other"));
  store.appendMetric(id, "loss", 0, 2.0);
  store.setSummary(id, "acc", 0.5);
  store.setStatus(id, Status::done);
  store.renameRun(id, "after: a better name");
  const RunRecord r = store.getRun(id);
  EXPECT_EQ(r.name, "after: a better name");
  EXPECT_EQ(r.status, Status::done);
  EXPECT_EQ(r.config_json, R"({"model":"mlp","lr":0.001})");  // the config keeps its name
  EXPECT_EQ(store.series(id, "loss").size(), 1u);
  EXPECT_EQ(store.summaries(id).size(), 1u);
  EXPECT_EQ(store.getRun(other).name, "other");
  RunFilter f;
  f.name_contains = "better";
  ASSERT_EQ(store.listRuns(f).size(), 1u);
  EXPECT_EQ(store.listRuns(f)[0].id, id);
  // A second connection sees the new name.
  EXPECT_EQ(RunStore(path(), OpenMode::readOnly).getRun(id).name, "after: a better name");
  expectError([&] { store.renameRun(id, ""); }, path(), {"needs a name"});
  expectError([&] { store.renameRun(42, "x"); }, path(), {"run 42 does not exist"});
  EXPECT_EQ(store.getRun(id).name, "after: a better name");
  {
    RunStore ro(path(), OpenMode::readOnly);
    expectError([&] { ro.renameRun(id, "x"); }, path(), {"read-only"});
  }
}

// v3 writes points in chunks; points a v2 database holds stay in the points table, are read
// first, and a later point of the same step (a resumed run redoing steps) wins.
TEST_F(RunStoreTest, V2PointsMigrateAndMergeWithChunks) {
  int64_t id = 0;
  {
    RunStore store(path());
    id = store.createRun(run(store.ensureExperiment("e"), "r"));
  }
  {
    // Make it a v2 file holding points rows, as a previous Lathe wrote it.
    RawDb raw(path());
    raw.exec("DROP TRIGGER chunks_of_deleted_series; DROP TABLE chunks; PRAGMA user_version = 2");
    raw.exec("INSERT INTO series(run_id, name) VALUES(" + std::to_string(id) + ", 'loss')");
    raw.exec(
        "INSERT INTO points(series_id, step, value, wall_time) "
        "SELECT id, 1, 2.5, 100.0 FROM series UNION ALL SELECT id, 2, 2.0, 101.0 FROM series");
  }
  RunStore store(path());
  EXPECT_EQ(RawDb(path()).query("PRAGMA user_version"), std::to_string(RunStore::kSchemaVersion));
  store.appendMetric(id, "loss", 3, 1.5, 102.0);
  store.appendMetric(id, "loss", 2, 1.75, 103.0);  // step 2 again: replaces the v2 row
  store.flush();
  store.appendMetric(id, "loss", 4, std::nan(""), 104.0);
  store.appendMetric(id, "loss", 3, 1.25, 105.0);  // again, in a later chunk
  const auto pts = store.series(id, "loss");
  ASSERT_EQ(pts.size(), 4u);
  EXPECT_EQ(pts[0].step, 1);
  EXPECT_DOUBLE_EQ(pts[0].value, 2.5);
  EXPECT_DOUBLE_EQ(pts[1].value, 1.75);
  EXPECT_DOUBLE_EQ(pts[1].wall_time, 103.0);
  EXPECT_DOUBLE_EQ(pts[2].value, 1.25);
  EXPECT_TRUE(std::isnan(pts[3].value));
  EXPECT_DOUBLE_EQ(pts[3].wall_time, 104.0);
  // Deleting the run removes both kinds of rows.
  store.deleteRun(id);
  EXPECT_EQ(RawDb(path()).count("SELECT count(*) FROM points"), 0);
  EXPECT_EQ(RawDb(path()).count("SELECT count(*) FROM chunks"), 0);
}

TEST_F(RunStoreTest, CorruptChunkIsReportedNotReadPast) {
  RunStore store(path());
  const int64_t id = store.createRun(run(store.ensureExperiment("e"), "r"));
  store.appendMetric(id, "loss", 1, 1.0);
  store.flush();
  RawDb(path()).exec("UPDATE chunks SET points = 1000");
  expectError([&] { store.series(id, "loss"); }, path(), {"series 'loss'", "corrupt"});
}

TEST_F(RunStoreTest, PointsOfARunDeletedElsewhereAreDropped) {
  RunStore writer(path());
  writer.setFlushPolicy({1000, 1e9});
  const int64_t id = writer.createRun(run(writer.ensureExperiment("e"), "r"));
  writer.appendMetric(id, "loss", 0, 1.0);
  writer.flush();
  writer.appendMetric(id, "loss", 1, 1.0);
  RunStore(path()).deleteRun(id);
  EXPECT_NO_THROW(writer.flush());
  EXPECT_EQ(writer.bufferedPoints(), 0u);
  EXPECT_EQ(RawDb(path()).count("SELECT count(*) FROM chunks"), 0);
}

TEST_F(RunStoreTest, CompareSeveralRuns) {
  RunStore store(path());
  const int64_t e = store.ensureExperiment("e");
  const int64_t a = store.createRun(run(e, "a"));
  const int64_t b = store.createRun(run(e, "b"));
  const int64_t c = store.createRun(run(e, "c"));
  store.setSummaries(a, {{"accuracy", 0.91}, {"peak_mb", 120.0}, {"method", std::string("lora")}});
  store.setSummary(b, "accuracy", 0.95);
  store.setSummary(b, "latency_ms", std::nan(""));
  store.setSummary(b, "accuracy", 0.96);  // replaces
  store.setSummary(c, "method", "prune");
  const Comparison cmp = store.compare({c, a, b, a});
  ASSERT_EQ(cmp.runs.size(), 4u);
  EXPECT_EQ(names(cmp.runs), (std::vector<std::string>{"c", "a", "b", "a"}));
  EXPECT_EQ(cmp.keys, (std::vector<std::string>{"accuracy", "latency_ms", "method", "peak_mb"}));
  ASSERT_EQ(cmp.values.size(), 4u);
  auto num = [&](size_t i, size_t j) { return std::get<double>(cmp.values[i][j].value()); };
  auto text = [&](size_t i, size_t j) { return std::get<std::string>(cmp.values[i][j].value()); };
  EXPECT_FALSE(cmp.values[0][0].has_value());
  EXPECT_EQ(text(0, 2), "prune");
  EXPECT_DOUBLE_EQ(num(1, 0), 0.91);
  EXPECT_DOUBLE_EQ(num(1, 3), 120.0);
  EXPECT_EQ(text(1, 2), "lora");
  EXPECT_DOUBLE_EQ(num(2, 0), 0.96);
  EXPECT_TRUE(std::isnan(num(2, 1)));
  EXPECT_FALSE(cmp.values[2][2].has_value());
  EXPECT_EQ(cmp.values[3], cmp.values[1]);
  EXPECT_TRUE(store.compare({}).runs.empty());
  expectError([&] { store.compare({a, 777}); }, path(), {"run 777 does not exist"});
}

TEST_F(RunStoreTest, Artifacts) {
  RunStore store(path());
  const int64_t id = store.createRun(run(store.ensureExperiment("e"), "r"));
  EXPECT_FALSE(store.latestCheckpoint(id).has_value());
  store.addArtifact({0, id, "checkpoint", "/ck/1", 100, "sha256:aa", 10});
  store.addArtifact({0, id, "export", "/m.onnx", 50, "sha256:bb", {}});
  store.addArtifact({0, id, "checkpoint", "/ck/2", 101, "sha256:cc", 20});
  const auto all = store.artifacts(id);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].kind, "export");
  EXPECT_EQ(all[1].bytes, 50);
  EXPECT_EQ(all[1].hash, "sha256:bb");
  EXPECT_FALSE(all[1].step.has_value());
  EXPECT_GT(all[1].created_at, 1.6e9);
  EXPECT_EQ(store.latestCheckpoint(id)->path, "/ck/2");
  expectError([&] { store.addArtifact({0, id, "", "/x", 1, "", {}}); }, path(), {"needs a kind"});
  expectError(
      [&] {
        store.addArtifact({0, id, "export", "/x", -1, "", {}});
      },
      path(), {"bytes >= 0"});
}

TEST_F(RunStoreTest, DefaultPathFollowsXdg) {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  const char* home = std::getenv("HOME");
  const std::string saved_xdg = xdg ? xdg : "", saved_home = home ? home : "";
  setenv("XDG_DATA_HOME", "/data/me", 1);
  EXPECT_EQ(RunStore::defaultPath(), "/data/me/lathe/runs.db");
  setenv("XDG_DATA_HOME", "relative/ignored", 1);  // the XDG spec: relative paths are invalid
  setenv("HOME", "/home/me", 1);
  EXPECT_EQ(RunStore::defaultPath(), "/home/me/.local/share/lathe/runs.db");
  unsetenv("XDG_DATA_HOME");
  EXPECT_EQ(RunStore::defaultPath(), "/home/me/.local/share/lathe/runs.db");
  if (xdg) setenv("XDG_DATA_HOME", saved_xdg.c_str(), 1);
  if (home) {
    setenv("HOME", saved_home.c_str(), 1);
  } else {
    unsetenv("HOME");
  }
}

TEST_F(RunStoreTest, WriterThreadAndReaderThreadShareTheFile) {
  int64_t id = 0;
  {
    RunStore setup(path());
    id = setup.createRun(run(setup.ensureExperiment("e"), "r"));
  }
  constexpr int kSteps = 20000;
  std::atomic<bool> done{false};
  std::string writer_error;
  std::thread writer([&] {
    try {
      RunStore store(path());
      store.setFlushPolicy({500, 1e9});
      store.setStatus(id, Status::running);
      for (int s = 0; s < kSteps; ++s) {
        store.appendMetric(id, "loss", s, 1.0 / (s + 1));
        if (s % 1000 == 0) store.setSummary(id, "last_step", static_cast<double>(s));
      }
      store.setStatus(id, Status::done);
    } catch (const Error& e) {
      writer_error = e.what();
    }
    done = true;
  });
  RunStore reader(path());
  size_t last = 0;
  int reads = 0;
  while (!done || reads == 0) {
    const auto pts = reader.series(id, "loss");
    EXPECT_GE(pts.size(), last) << "a reader never sees points disappear";
    EXPECT_EQ(pts.size() % 500, 0u) << "a flush is one transaction";
    last = pts.size();
    reader.compare({id});
    ++reads;
  }
  writer.join();
  EXPECT_EQ(writer_error, "");
  EXPECT_EQ(reader.series(id, "loss").size(), static_cast<size_t>(kSteps));
  EXPECT_EQ(reader.getRun(id).status, Status::done);
}

}  // namespace
}  // namespace lathe::store
