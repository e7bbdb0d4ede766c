// lathe-cli run / resume / runs / show / compare / methods / export / estimate: the run engine
// and the run store from a terminal. Exit codes: 0 done, 1 the run failed (or was cancelled, or
// an estimate does not fit), 2 bad usage, a bad config or a database that cannot be used.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "app/cli/Commands.h"
#include "core/base/Error.h"
#include "core/methods/Method.h"
#include "core/run/Estimate.h"
#include "core/run/Export.h"
#include "core/run/Runner.h"
#include "core/store/RunStore.h"

namespace fs = std::filesystem;
using lathe::run::RunEvent;

namespace {

std::atomic<lathe::run::Runner*> g_active{nullptr};

void onInterrupt(int) {
  // Ctrl-C: stop after the current step and keep a checkpoint (a second Ctrl-C kills).
  if (auto* r = g_active.load()) r->cancel();
  std::signal(SIGINT, SIG_DFL);
}

[[noreturn]] void fail(const std::string& cmd, const std::string& message, int code = 2) {
  std::cerr << "lathe-cli " << cmd << ": " << message << "\n";
  throw CLI::RuntimeError(code);
}

std::string formatValue(const lathe::store::SummaryValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  std::ostringstream o;
  o << std::setprecision(6) << std::get<double>(v);
  return o.str();
}

nlohmann::json summaryJson(const std::map<std::string, lathe::store::SummaryValue>& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m) {
    if (const auto* s = std::get_if<std::string>(&v))
      j[k] = *s;
    else
      j[k] = std::get<double>(v);
  }
  return j;
}

std::string formatTime(double t) {
  if (!(t > 0)) return "-";
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

// Runs to the end on this thread, printing progress; returns the process exit code.
int drive(lathe::run::Runner& runner, bool json, const std::string& db_path) {
  const bool tty = !json && isatty(STDERR_FILENO) != 0;
  std::string last_line;
  runner.subscribe([&](const RunEvent& e) {
    switch (e.type) {
      case lathe::run::EventType::progress:
        if (tty) {
          const int width = 30;
          const int filled = static_cast<int>(e.progress * width);
          std::ostringstream o;
          o << "\r[" << std::string(static_cast<size_t>(filled), '#')
            << std::string(static_cast<size_t>(width - filled), '.') << "] " << std::fixed
            << std::setprecision(1) << e.progress * 100 << "% " << last_line;
          if (e.eta_s >= 0) o << " eta " << static_cast<int64_t>(e.eta_s) << "s";
          std::cerr << o.str() << "   " << std::flush;
        }
        break;
      case lathe::run::EventType::step: {
        std::ostringstream o;
        o << "step " << e.step.step << "/" << e.step.total_steps << " loss " << std::setprecision(4)
          << e.step.loss;
        last_line = o.str();
        break;
      }
      case lathe::run::EventType::eval:
        if (!json) {
          std::cerr << (tty ? "\n" : "") << "eval at step " << e.eval.step << ": loss "
                    << e.eval.loss;
          if (e.eval.accuracy >= 0) std::cerr << ", accuracy " << e.eval.accuracy;
          if (e.eval.perplexity >= 0) std::cerr << ", perplexity " << e.eval.perplexity;
          std::cerr << "\n";
        }
        break;
      case lathe::run::EventType::log:
        if (!json) std::cerr << (tty ? "\n" : "") << e.message << "\n";
        break;
      case lathe::run::EventType::status:
        if (!json)
          std::cerr << (tty ? "\n" : "") << "run " << e.run_id << ": "
                    << lathe::store::statusName(e.status)
                    << (e.message.empty() ? "" : " (" + e.message + ")") << "\n";
        break;
      case lathe::run::EventType::summary: break;
    }
  });
  g_active = &runner;
  auto previous = std::signal(SIGINT, onInterrupt);
  runner.runHere();
  std::signal(SIGINT, previous);
  g_active = nullptr;

  lathe::store::RunStore db(db_path, lathe::store::OpenMode::readOnly);
  const lathe::store::RunRecord rec = db.getRun(runner.runId());
  const auto summary = db.summaries(runner.runId());
  if (json) {
    nlohmann::json out = {{"run_id", rec.id},
                          {"name", rec.name},
                          {"status", lathe::store::statusName(rec.status)},
                          {"message", rec.message},
                          {"config_hash", rec.config_hash},
                          {"summary", summaryJson(summary)}};
    std::cout << out.dump(2) << "\n";
  } else {
    if (tty) std::cerr << "\n";
    for (const auto& [k, v] : summary)
      if (k.rfind("config.", 0) != 0) std::cout << "  " << k << ": " << formatValue(v) << "\n";
  }
  return rec.status == lathe::store::Status::done ? 0 : 1;
}

// The run config at `path`, its hardware.device replaced by `device` when one is given.
lathe::run::RunConfig loadConfig(const std::string& path, const std::string& device) {
  lathe::run::RunConfig config = lathe::run::RunConfig::load(path);
  if (device.empty()) return config;
  nlohmann::json j = config.toJson();
  j["hardware"]["device"] = device;
  return lathe::run::RunConfig::parse(j, config.base_dir);
}

std::string dbPathOf(const std::string& given) {
  return given.empty() ? lathe::store::RunStore::defaultPath() : given;
}

struct Common {
  std::string db;
};

void addDbOption(CLI::App* cmd, Common& c) {
  cmd->add_option("--db", c.db, "run database (default: $XDG_DATA_HOME/lathe/runs.db)");
}

}  // namespace

void addRunCommands(CLI::App& app) {
  // run
  {
    struct Opts : Common {
      std::string config, device, experiment = "default";
      bool json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("run", "train a run config and record it in the database");
    cmd->add_option("CONFIG", o->config,
                    "run config (JSON), e.g. resources/examples/fashion_mlp.json")
        ->required();
    addDbOption(cmd, *o);
    cmd->add_option("--device", o->device, "override hardware.device: cpu or cuda:N");
    cmd->add_option("--experiment", o->experiment, "experiment the run belongs to");
    cmd->add_flag("--json", o->json, "print a JSON summary on stdout instead of text");
    cmd->callback([o] {
      std::unique_ptr<lathe::run::Runner> runner;
      const std::string db = dbPathOf(o->db);
      try {
        lathe::run::RunConfig config = loadConfig(o->config, o->device);
        lathe::run::RunnerOptions ro;
        ro.db_path = db;
        ro.experiment = o->experiment;
        runner = std::make_unique<lathe::run::Runner>(std::move(config), ro);
      } catch (const lathe::Error& e) {
        fail("run", e.what());
      }
      if (!o->json) std::cerr << "run " << runner->runId() << " in " << db << "\n";
      const int rc = drive(*runner, o->json, db);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
  // resume
  {
    struct Opts : Common {
      int64_t run = 0;
      bool json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("resume", "continue an interrupted or cancelled run");
    cmd->add_option("RUN", o->run, "run id")->required();
    addDbOption(cmd, *o);
    cmd->add_flag("--json", o->json, "print a JSON summary on stdout");
    cmd->callback([o] {
      const std::string db = dbPathOf(o->db);
      std::unique_ptr<lathe::run::Runner> runner;
      try {
        lathe::run::RunnerOptions ro;
        ro.db_path = db;
        runner = lathe::run::Runner::resume(o->run, ro);
      } catch (const lathe::Error& e) {
        fail("resume", e.what());
      }
      const int rc = drive(*runner, o->json, db);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
  // runs
  {
    struct Opts : Common {
      std::string status, name, tag;
      int64_t limit = 50;
      bool json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("runs", "list runs (newest first)");
    addDbOption(cmd, *o);
    cmd->add_option("--status", o->status, "only runs with this status");
    cmd->add_option("--name", o->name, "only runs whose name contains this");
    cmd->add_option("--tag", o->tag, "only runs with this tag");
    cmd->add_option("--limit", o->limit, "at most this many (0: all)");
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->callback([o] {
      try {
        lathe::store::RunStore db(dbPathOf(o->db));
        lathe::store::RunFilter f;
        if (!o->status.empty()) f.status = lathe::store::parseStatus(o->status);
        f.name_contains = o->name;
        f.tag = o->tag;
        f.limit = o->limit;
        const auto runs = db.listRuns(f);
        if (o->json) {
          nlohmann::json arr = nlohmann::json::array();
          for (const auto& r : runs)
            arr.push_back({{"id", r.id},
                           {"name", r.name},
                           {"status", lathe::store::statusName(r.status)},
                           {"device", r.device},
                           {"created_at", r.created_at},
                           {"message", r.message}});
          std::cout << arr.dump(2) << "\n";
          return;
        }
        std::cout << std::left << std::setw(6) << "id" << std::setw(24) << "name" << std::setw(13)
                  << "status" << std::setw(9) << "device"
                  << "created\n";
        for (const auto& r : runs)
          std::cout << std::setw(6) << r.id << std::setw(24) << r.name.substr(0, 23)
                    << std::setw(13) << lathe::store::statusName(r.status) << std::setw(9)
                    << r.device << formatTime(r.created_at) << "\n";
      } catch (const lathe::Error& e) {
        fail("runs", e.what());
      }
    });
  }
  // show
  {
    struct Opts : Common {
      int64_t run = 0;
      bool json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("show", "a run's config, status, summary and artifacts");
    cmd->add_option("RUN", o->run, "run id")->required();
    addDbOption(cmd, *o);
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->callback([o] {
      try {
        lathe::store::RunStore db(dbPathOf(o->db));
        const auto r = db.getRun(o->run);
        const auto summary = db.summaries(o->run);
        const auto artifacts = db.artifacts(o->run);
        nlohmann::json arts = nlohmann::json::array();
        for (const auto& a : artifacts)
          arts.push_back(
              {{"kind", a.kind}, {"path", a.path}, {"bytes", a.bytes}, {"hash", a.hash}});
        nlohmann::json series = db.seriesNames(o->run);
        if (o->json) {
          std::cout << nlohmann::json{{"id", r.id},
                                      {"name", r.name},
                                      {"status", lathe::store::statusName(r.status)},
                                      {"message", r.message},
                                      {"device", r.device},
                                      {"host", r.host},
                                      {"code_version", r.code_version},
                                      {"config", nlohmann::json::parse(r.config_json)},
                                      {"config_hash", r.config_hash},
                                      {"summary", summaryJson(summary)},
                                      {"series", series},
                                      {"artifacts", arts}}
                           .dump(2)
                    << "\n";
          return;
        }
        std::cout << "run " << r.id << " \"" << r.name
                  << "\": " << lathe::store::statusName(r.status)
                  << (r.message.empty() ? "" : " (" + r.message + ")") << "\n"
                  << "  device " << r.device << " on " << r.host << ", Lathe " << r.code_version
                  << ", created " << formatTime(r.created_at) << "\n  config " << r.config_hash
                  << "\n";
        for (const auto& [k, v] : summary)
          if (k.rfind("config.", 0) != 0) std::cout << "  " << k << ": " << formatValue(v) << "\n";
        std::cout << "  series: " << series.dump() << "\n";
        for (const auto& a : artifacts)
          std::cout << "  " << a.kind << ": " << a.path << " (" << a.bytes << " bytes)\n";
      } catch (const lathe::Error& e) {
        fail("show", e.what());
      }
    });
  }
  // compare
  {
    struct Opts : Common {
      std::vector<int64_t> runs;
      bool csv = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("compare", "runs side by side: one row per figure");
    cmd->add_option("RUN", o->runs, "run ids")->required();
    addDbOption(cmd, *o);
    cmd->add_flag("--csv", o->csv, "CSV: one row per run, one column per figure");
    cmd->callback([o] {
      try {
        lathe::store::RunStore db(dbPathOf(o->db));
        const auto c = db.compare(o->runs);
        if (o->csv) {
          std::cout << "run,name,status";
          for (const auto& k : c.keys) std::cout << "," << k;
          std::cout << "\n";
          for (size_t i = 0; i < c.runs.size(); ++i) {
            std::string name = c.runs[i].name;
            for (auto& ch : name)
              if (ch == ',' || ch == '"') ch = ' ';
            std::cout << c.runs[i].id << "," << name << ","
                      << lathe::store::statusName(c.runs[i].status);
            for (const auto& v : c.values[i]) std::cout << "," << (v ? formatValue(*v) : "");
            std::cout << "\n";
          }
          return;
        }
        std::cout << std::left << std::setw(28) << "figure";
        for (const auto& r : c.runs)
          std::cout << std::setw(16) << ("#" + std::to_string(r.id) + " " + r.name).substr(0, 15);
        std::cout << "\n";
        for (size_t k = 0; k < c.keys.size(); ++k) {
          if (c.keys[k].rfind("config.", 0) == 0) continue;
          std::cout << std::setw(28) << c.keys[k];
          for (size_t i = 0; i < c.runs.size(); ++i)
            std::cout << std::setw(16) << (c.values[i][k] ? formatValue(*c.values[i][k]) : "-");
          std::cout << "\n";
        }
      } catch (const lathe::Error& e) {
        fail("compare", e.what());
      }
    });
  }
  // methods
  {
    auto json = std::make_shared<bool>(false);
    CLI::App* cmd = app.add_subcommand("methods", "the efficiency methods and their parameters");
    cmd->add_flag("--json", *json, "the full schema as JSON (what the GUI renders)");
    cmd->callback([json] {
      const auto& reg = lathe::methods::MethodRegistry::instance();
      if (*json) {
        std::cout << reg.toJson().dump(2) << "\n";
        return;
      }
      for (const auto* m : reg.all()) {
        std::cout << m->name << " (" << m->category << "): " << m->summary << "\n";
        for (const auto& p : m->params)
          std::cout << "    " << std::left << std::setw(14) << p.name << std::setw(9)
                    << lathe::methods::paramTypeName(p.type) << " default "
                    << p.default_value.dump() << "  " << p.help << "\n";
      }
    });
  }
  // estimate
  {
    struct Opts {
      std::string config, device;
      int64_t capacity = 0;
      bool json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "estimate", "peak memory by tag and step time of a run config, before launching it");
    cmd->add_option("CONFIG", o->config, "run config (JSON)")->required();
    cmd->add_option("--device", o->device, "override hardware.device: cpu or cuda:N");
    cmd->add_option("--capacity", o->capacity,
                    "plan for a device of this many bytes instead of this one's memory")
        ->check(CLI::PositiveNumber);
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->callback([o] {
      lathe::run::Estimate e;
      try {
        lathe::run::RunConfig config = loadConfig(o->config, o->device);
        lathe::run::EstimateOptions options;
        options.override_capacity_bytes = o->capacity;
        e = lathe::run::estimateRun(config, options);
      } catch (const lathe::Error& err) {
        fail("estimate", err.what());
      }
      if (o->json) {
        std::cout << e.toJson().dump(2) << "\n";
      } else {
        auto row = [](const std::string& k, const std::string& v) {
          std::cout << "  " << std::left << std::setw(18) << k << v << "\n";
        };
        std::cout << "estimate for \"" << e.name << "\" on " << e.device << ", batch "
                  << e.batch_size << (e.grad_accum > 1 ? " x " + std::to_string(e.grad_accum) : "")
                  << ", " << e.planned_steps << " steps\n";
        for (int t = 0; t < lathe::kNumMemoryTags; ++t)
          row(lathe::memoryTagName(static_cast<lathe::MemoryTag>(t)),
              lathe::formatBytes(e.tag_bytes[static_cast<size_t>(t)]));
        row("peak memory", lathe::formatBytes(e.peak_bytes));
        std::ostringstream st, tt;
        st << std::fixed << std::setprecision(2) << e.step_time_s * 1e3 << " ms";
        tt << std::fixed << std::setprecision(1) << e.total_time_s
           << " s (training only, evaluation not included)";
        row("step time", e.calibrated() ? st.str() : "not timed");
        row("total time", e.calibrated() ? tt.str() : "not timed");
        row("capacity", e.capacity_bytes > 0
                            ? lathe::formatBytes(e.capacity_bytes) + " (" + e.capacity_source + ")"
                            : e.capacity_source);
        std::ostringstream cal;
        for (const auto& p : e.calibration)
          cal << (cal.tellp() > 0 ? ", " : "") << "batch " << p.batch << ": "
              << lathe::formatBytes(p.peak) << ", " << std::fixed << std::setprecision(2)
              << p.step_time_s * 1e3 << " ms";
        row("calibrated on", e.calibrated() ? cal.str() : "nothing (" + e.note + ")");
        std::cout << (e.fits ? "fits" : "does not fit") << "\n";
      }
      if (!e.fits) throw CLI::RuntimeError(1);
    });
  }
  // export
  {
    struct Opts : Common {
      int64_t run = 0;
      std::string format = "safetensors", out;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("export", "write a finished run's model to a file");
    cmd->add_option("RUN", o->run, "run id")->required();
    addDbOption(cmd, *o);
    cmd->add_option("--format", o->format, "safetensors")->check(CLI::IsMember({"safetensors"}));
    cmd->add_option("--out", o->out, "output file")->required();
    cmd->callback([o] {
      try {
        lathe::store::RunStore db(dbPathOf(o->db));
        const lathe::store::Artifact a = lathe::run::exportRunModel(db, o->run, o->out, o->format);
        std::cout << o->out << " (" << a.bytes
                  << " bytes, safetensors with the architecture spec)\n";
      } catch (const lathe::Error& e) {
        fail("export", e.what());
      }
    });
  }
}
