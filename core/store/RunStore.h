// RunStore: Lathe's run database, one SQLite file (WAL, foreign keys, busy timeout, schema
// version in PRAGMA user_version with forward migrations run in one transaction). It holds
// experiments, runs, metric series, summaries and artifacts; deleting a run deletes its rows in
// every table (ON DELETE CASCADE).
//
// Threads: a RunStore is one connection and is not thread-safe; give each thread its own
// (the runner writes through one, the GUI reads through another on the same file). WAL lets
// readers proceed while a writer commits; writers wait up to kBusyTimeoutMs for each other.
// Metric points are buffered and committed in one transaction per flush, so a reader sees them
// after the writer's flush (every FlushPolicy::max_points points or max_seconds, on flush(),
// setStatus() and destruction).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace lathe::store {

enum class Status { queued, running, paused, done, failed, cancelled, interrupted };

// "queued", "running", ... as stored in the database.
const char* statusName(Status s);
// The inverse of statusName; throws a lathe::Error naming the text and the valid names.
Status parseStatus(const std::string& name);

struct Experiment {
  int64_t id = 0;
  std::string name;
  double created_at = 0;  // seconds since the Unix epoch
  int64_t run_count = 0;
};

struct RunRecord {
  int64_t id = 0;  // assigned by createRun
  int64_t experiment_id = 0;
  std::string name;
  std::string config_json = "{}";  // the RunConfig, validated as JSON by createRun
  std::string config_hash;
  Status status = Status::queued;
  std::string message;  // why it failed / was interrupted; free text
  std::vector<std::string> tags;
  std::string host;          // createRun fills in this host when empty
  std::string device;        // "cpu", "cuda:0", ...
  std::string code_version;  // createRun fills in lathe::version() when empty
  int64_t owner_pid = 0;     // the process that last set it running or paused (0: none)
  double created_at = 0;     // seconds since the Unix epoch
  std::optional<double> started_at, ended_at;
};

// listRuns filter; empty fields match everything.
struct RunFilter {
  std::optional<int64_t> experiment_id;
  std::optional<Status> status;
  std::string name_contains;  // case-sensitive substring
  std::string tag;            // runs carrying this tag
  bool newest_first = true;   // order by id (creation order)
  int64_t limit = 0;          // 0: no limit
};

struct MetricPoint {
  int64_t step = 0;
  double value = 0;      // NaN is kept (a diverged loss is a result)
  double wall_time = 0;  // seconds since the Unix epoch; NaN when unknown (migrated v1 data)
};

// A summary is a number (NaN allowed) or a text.
using SummaryValue = std::variant<double, std::string>;

// compare(): a table of runs x summary keys.
struct Comparison {
  std::vector<RunRecord> runs;    // in the order asked for
  std::vector<std::string> keys;  // every key any of the runs has, sorted
  // values[i][j]: run i's summary keys[j], nullopt where that run has none.
  std::vector<std::vector<std::optional<SummaryValue>>> values;
};

struct Artifact {
  int64_t id = 0;  // assigned by addArtifact
  int64_t run_id = 0;
  std::string kind;  // "checkpoint", "export", ...
  std::string path;
  int64_t bytes = 0;
  std::string hash;             // e.g. "sha256:<hex>"
  std::optional<int64_t> step;  // training step a checkpoint resumes from
  double created_at = 0;        // filled in by addArtifact
};

struct FlushPolicy {
  size_t max_points = 4096;  // flush when this many points are buffered
  double max_seconds = 1.0;  // or when the oldest buffered point is this old
};

enum class OpenMode { readWrite, readOnly };

class RunStore {
 public:
  static constexpr int kSchemaVersion = 3;
  static constexpr int kBusyTimeoutMs = 20000;

  // $XDG_DATA_HOME/lathe/runs.db when XDG_DATA_HOME is an absolute path, else
  // $HOME/.local/share/lathe/runs.db. Throws when neither variable is usable.
  static std::string defaultPath();

  // readWrite: creates the file and its directories if missing, migrates an older schema in one
  // transaction (after copying the file to "<path>.v<N>.bak"), and marks as interrupted the
  // runs left running or paused by a process of this host that is gone (pid and process start
  // time are recorded; runs of other hosts are left as they are). readOnly: the file must exist
  // at the current schema version; nothing is written, statuses are shown as stored. Throws a
  // lathe::Error naming the path for a file that is not a Lathe database, is damaged, is
  // read-only (in readWrite) or has a newer schema; the file is then left unchanged.
  explicit RunStore(const std::string& path, OpenMode mode = OpenMode::readWrite);
  ~RunStore();  // flushes buffered points; a failure is reported on stderr
  RunStore(RunStore&&) noexcept;
  RunStore& operator=(RunStore&&) noexcept;

  const std::string& path() const;

  // The id of the experiment `name`, created if missing.
  int64_t ensureExperiment(const std::string& name);
  std::vector<Experiment> experiments();

  // Inserts `run` (id, created_at ignored; experiment must exist); returns its id. A run created
  // running or paused is owned by this process.
  int64_t createRun(const RunRecord& run);
  // Flushes buffered points, then sets the status and message. running/paused: records this
  // process as the owner (throws while another live process of this host owns it), sets
  // started_at the first time and clears ended_at (resuming an interrupted run);
  // done/failed/cancelled/interrupted: sets ended_at.
  void setStatus(int64_t run_id, Status status, const std::string& message = "");
  RunRecord getRun(int64_t run_id);  // throws for an unknown id
  std::vector<RunRecord> listRuns(const RunFilter& filter = {});
  // Deletes the run with its series, points, summaries and artifact rows (not the files).
  void deleteRun(int64_t run_id);
  // Renames a run (the config JSON keeps the name it ran with); throws for an unknown id or an
  // empty name.
  void renameRun(int64_t run_id, const std::string& name);

  // Buffers one point (wall_time defaults to now); flushes per the FlushPolicy. A later point
  // with the same run, series and step replaces the earlier one (a resumed run re-logs steps).
  // The run must exist (checked on a series' first point); points of a run deleted meanwhile
  // are dropped at the flush.
  void appendMetric(int64_t run_id, const std::string& series, int64_t step, double value);
  void appendMetric(int64_t run_id, const std::string& series, int64_t step, double value,
                    double wall_time);
  // Commits every buffered point in one transaction. On failure the points stay buffered.
  void flush();
  void setFlushPolicy(const FlushPolicy& policy);
  size_t bufferedPoints() const;
  // Reads flush this store's buffer first, so a store sees its own points.
  std::vector<MetricPoint> series(int64_t run_id, const std::string& name);  // by step
  std::vector<std::string> seriesNames(int64_t run_id);                      // sorted

  void setSummary(int64_t run_id, const std::string& key, double value);
  void setSummary(int64_t run_id, const std::string& key, const std::string& value);
  void setSummary(int64_t run_id, const std::string& key, const char* value) {
    setSummary(run_id, key, std::string(value));
  }
  void setSummaries(int64_t run_id, const std::map<std::string, SummaryValue>& values);
  std::map<std::string, SummaryValue> summaries(int64_t run_id);
  // The runs and their summaries in one read transaction; throws naming any unknown id.
  Comparison compare(const std::vector<int64_t>& run_ids);

  // Records a file a run produced; returns the artifact id.
  int64_t addArtifact(const Artifact& artifact);
  std::vector<Artifact> artifacts(int64_t run_id);  // in the order added
  // The checkpoint added last, which an interrupted run resumes from.
  std::optional<Artifact> latestCheckpoint(int64_t run_id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lathe::store
