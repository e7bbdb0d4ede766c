#include "ui/panels/monitor/MonitorPanel.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "core/store/RunStore.h"
#include "ui/FormatUtil.h"
#include "ui/charts/MetricChart.h"

namespace lathe::ui {
namespace {

constexpr qsizetype kMaxTracePoints = MetricChart::kMaxHeldPoints;

void appendCapped(QVector<QPointF>& v, const QPointF& p) {
  v.push_back(p);
  if (v.size() > kMaxTracePoints) {
    qsizetype w = 0;
    for (qsizetype r = 0; r < v.size(); r += 2) v[w++] = v[r];
    v.resize(w);
  }
}

bool isActive(const QString& status) {
  return status == "queued" || status == "running" || status == "paused";
}

}  // namespace

MonitorPanel::MonitorPanel(store::RunStore* store, QWidget* parent)
    : QWidget(parent), store_(store) {
  setObjectName("MonitorPanel");
  auto* layout = new QVBoxLayout(this);

  auto* top = new QHBoxLayout();
  header_ = new QLabel(tr("No run selected. Launch a run from Setup or pick one in the Runs list."),
                       this);
  header_->setObjectName("MonitorHeader");
  header_->setStyleSheet("font-size: 14px; font-weight: bold;");
  top->addWidget(header_, 1);
  pause_ = new QPushButton(tr("Pause"), this);
  pause_->setObjectName("PauseButton");
  cancel_ = new QPushButton(tr("Cancel"), this);
  cancel_->setObjectName("CancelButton");
  top->addWidget(pause_);
  top->addWidget(cancel_);
  layout->addLayout(top);

  auto* prog = new QHBoxLayout();
  progress_ = new QProgressBar(this);
  progress_->setObjectName("RunProgress");
  progress_->setRange(0, 1000);
  progress_->setFormat("%p%");
  eta_ = new QLabel(this);
  eta_->setObjectName("RunEta");
  eta_->setMinimumWidth(160);
  prog->addWidget(progress_, 1);
  prog->addWidget(eta_);
  layout->addLayout(prog);

  auto* split = new QSplitter(Qt::Vertical, this);
  auto* grid_host = new QWidget(split);
  auto* grid = new QGridLayout(grid_host);
  grid->setContentsMargins(0, 0, 0, 0);
  auto add = [&](const QString& key, const QString& title, const QString& y, int row, int col,
                 std::vector<std::pair<QString, QString>> series) {
    auto* c = new MetricChart(title, y, grid_host);
    c->setObjectName("chart." + key);
    for (const auto& [k, label] : series) c->addSeries(k, label);
    grid->addWidget(c, row, col);
    charts_[key] = c;
  };
  add("loss", tr("Loss"), tr("loss"), 0, 0, {{"train", tr("train")}, {"val", tr("validation")}});
  add("accuracy", tr("Accuracy"), tr("accuracy"), 0, 1,
      {{"train", tr("train (batch)")}, {"val", tr("validation")}});
  add("throughput", tr("Throughput"), tr("samples/s"), 1, 0, {{"samples", tr("samples/s")}});
  add("memory", tr("Memory"), tr("MiB"), 1, 1, {{"current", tr("allocated")}});
  log_ = new QPlainTextEdit(split);
  log_->setObjectName("RunLog");
  log_->setReadOnly(true);
  log_->setMaximumBlockCount(5000);
  split->addWidget(grid_host);
  split->addWidget(log_);
  split->setStretchFactor(0, 4);
  split->setStretchFactor(1, 1);
  layout->addWidget(split, 1);

  connect(cancel_, &QPushButton::clicked, this, [this] {
    if (run_id_ != 0) Q_EMIT cancelRequested(run_id_);
  });
  connect(pause_, &QPushButton::clicked, this, [this] {
    if (run_id_ == 0) return;
    auto it = live_.find(run_id_);
    if (it != live_.end() && it->second.status == "paused")
      Q_EMIT resumeRequested(run_id_);
    else
      Q_EMIT pauseRequested(run_id_);
  });
  updateHeader(QString(), QString());
}

MetricChart* MonitorPanel::chart(const QString& name) const {
  auto it = charts_.find(name);
  return it == charts_.end() ? nullptr : it->second;
}

void MonitorPanel::showRun(qint64 run_id) {
  run_id_ = run_id;
  run_name_.clear();
  if (store_ != nullptr) {
    try {
      run_name_ = QString::fromStdString(store_->getRun(run_id).name);
    } catch (const std::exception&) {
    }
  }
  auto it = live_.find(run_id);
  if (it != live_.end())
    showTrace(it->second);
  else
    loadFromStore(run_id);
}

void MonitorPanel::showTrace(const Trace& t) {
  chart("loss")->setPoints("train", t.loss);
  chart("loss")->setPoints("val", t.val_loss);
  chart("accuracy")->setPoints("train", t.accuracy);
  chart("accuracy")->setPoints("val", t.val_accuracy);
  chart("throughput")->setPoints("samples", t.samples);
  chart("memory")->setPoints("current", t.memory);
  log_->setPlainText(t.log.join('\n'));
  updateProgress(t.progress, t.eta_s);
  updateHeader(t.status, t.message);
}

void MonitorPanel::setStore(store::RunStore* store) {
  store_ = store;
  live_.clear();
  clearRun();
}

void MonitorPanel::clearRun() {
  run_id_ = 0;
  run_name_.clear();
  for (auto& [key, c] : charts_) c->clear();
  log_->clear();
  updateProgress(0, -1);
  header_->setText(tr("No run selected. Launch a run from Setup or pick one in the Runs list."));
  header_->setToolTip({});
  updateHeader({}, {});
}

void MonitorPanel::forgetRun(qint64 run_id) {
  live_.erase(run_id);
  if (run_id == run_id_) clearRun();
}

void MonitorPanel::followResumed(qint64 run_id) {
  Trace t = readTrace(run_id);
  t.status = "queued";
  t.log << tr("resumed from the latest checkpoint");
  live_[run_id] = std::move(t);
  if (run_id == run_id_) showTrace(live_[run_id]);
}

void MonitorPanel::loadFromStore(qint64 run_id) {
  showTrace(readTrace(run_id));
}

MonitorPanel::Trace MonitorPanel::readTrace(qint64 run_id) const {
  Trace t;
  if (store_ != nullptr) {
    try {
      const store::RunRecord r = store_->getRun(run_id);
      auto load = [&](const char* name) {
        QVector<QPointF> v;
        for (const store::MetricPoint& p : store_->series(run_id, name))
          v.push_back(QPointF(static_cast<double>(p.step), p.value));
        return v;
      };
      t.loss = load("loss");
      t.val_loss = load("val_loss");
      t.accuracy = load("train_accuracy");
      t.val_accuracy = load("val_accuracy");
      t.samples = load("samples_per_s");
      t.memory = load("memory_mb");
      t.status = store::statusName(r.status);
      t.message = QString::fromStdString(r.message);
      const auto sums = store_->summaries(run_id);
      double total = 0;
      if (auto s = sums.find("total_steps"); s != sums.end())
        if (const double* d = std::get_if<double>(&s->second)) total = *d;
      t.progress = r.status == store::Status::done  ? 1.0
                   : total > 0 && !t.loss.isEmpty() ? t.loss.back().x() / total
                                                    : 0.0;
      t.log << tr("Run #%1 \"%2\" from %3: %4 recorded series.")
                   .arg(run_id)
                   .arg(QString::fromStdString(r.name), QString::fromStdString(store_->path()))
                   .arg(store_->seriesNames(run_id).size());
      if (!r.message.empty()) t.log << QString::fromStdString(r.message);
      for (const auto& [k, v] : sums)
        if (const double* d = std::get_if<double>(&v))
          t.log << QString("  %1 = %2").arg(QString::fromStdString(k)).arg(*d, 0, 'g', 6);
    } catch (const std::exception& e) {
      t.status = "unknown";
      t.log << tr("Cannot read run %1: %2").arg(run_id).arg(e.what());
    }
  }
  return t;
}

void MonitorPanel::onStep(qint64 run_id, const StepPoint& p) {
  Trace& t = live_[run_id];
  const double x = static_cast<double>(p.step);
  appendCapped(t.loss, {x, p.loss});
  if (p.accuracy >= 0) appendCapped(t.accuracy, {x, p.accuracy});
  appendCapped(t.samples, {x, p.samples_per_s});
  appendCapped(t.memory, {x, p.memory_mb});
  if (run_id != run_id_) return;
  chart("loss")->append("train", {x, p.loss});
  if (p.accuracy >= 0) chart("accuracy")->append("train", {x, p.accuracy});
  chart("throughput")->append("samples", {x, p.samples_per_s});
  chart("memory")->append("current", {x, p.memory_mb});
}

void MonitorPanel::onEval(qint64 run_id, const EvalPoint& p) {
  if (p.split != "val") return;
  Trace& t = live_[run_id];
  const double x = static_cast<double>(p.step);
  appendCapped(t.val_loss, {x, p.loss});
  if (p.accuracy >= 0) appendCapped(t.val_accuracy, {x, p.accuracy});
  if (run_id != run_id_) return;
  chart("loss")->append("val", {x, p.loss});
  if (p.accuracy >= 0) chart("accuracy")->append("val", {x, p.accuracy});
}

void MonitorPanel::onLog(qint64 run_id, const QString& line) {
  Trace& t = live_[run_id];
  t.log << line;
  if (t.log.size() > 5000) t.log.removeFirst();
  if (run_id == run_id_) log_->appendPlainText(line);
}

void MonitorPanel::onProgress(qint64 run_id, double fraction, double eta_s) {
  Trace& t = live_[run_id];
  t.progress = fraction;
  t.eta_s = eta_s;
  if (run_id == run_id_) updateProgress(fraction, eta_s);
}

void MonitorPanel::onStatus(qint64 run_id, const QString& status, const QString& message) {
  Trace& t = live_[run_id];
  t.status = status;
  t.message = message;
  const QString line =
      message.isEmpty() ? tr("status: %1").arg(status) : tr("status: %1 (%2)").arg(status, message);
  t.log << line;
  if (status == "done") t.progress = 1.0;
  if (run_id != run_id_) return;
  log_->appendPlainText(line);
  updateHeader(status, message);
  if (status == "done") updateProgress(1.0, 0);
}

void MonitorPanel::updateHeader(const QString& status, const QString& message) {
  if (run_id_ == 0) {
    cancel_->setEnabled(false);
    pause_->setEnabled(false);
    return;
  }
  header_->setText(tr("Run #%1 %2 — %3").arg(run_id_).arg(run_name_, status));
  header_->setToolTip(message);
  const bool live = live_.count(run_id_) > 0;
  cancel_->setEnabled(live && isActive(status));
  pause_->setEnabled(live && (status == "running" || status == "paused"));
  pause_->setText(status == "paused" ? tr("Resume") : tr("Pause"));
}

void MonitorPanel::updateProgress(double fraction, double eta_s) {
  progress_->setValue(static_cast<int>(std::lround(1000 * std::clamp(fraction, 0.0, 1.0))));
  eta_->setText(fraction >= 1.0 ? tr("finished")
                : eta_s >= 0    ? tr("ETA %1").arg(formatSeconds(eta_s))
                                : QString());
}

}  // namespace lathe::ui
