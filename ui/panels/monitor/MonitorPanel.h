// Monitor tab: the selected run's curves (train / validation loss and accuracy, samples/s,
// memory), progress with ETA, log, and Cancel / Pause. Runs launched in this session are traced
// live from the EngineBridge's signals (kept per run, so switching back and forth loses
// nothing); other runs are loaded from the RunStore's series.
#pragma once

#include <QPointF>
#include <QStringList>
#include <QVector>
#include <QWidget>
#include <map>

#include "ui/EngineBridge.h"

class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;

namespace lathe::store {
class RunStore;
}

namespace lathe::ui {

class MetricChart;

class MonitorPanel : public QWidget {
  Q_OBJECT

 public:
  explicit MonitorPanel(store::RunStore* store, QWidget* parent = nullptr);

  void showRun(qint64 run_id);
  void setStore(store::RunStore* store);  // another database: forgets every trace
  void clearRun();                        // shows no run
  void forgetRun(qint64 run_id);          // a deleted run
  // A run resumed in this session: its trace starts from the store's curves and goes on live.
  void followResumed(qint64 run_id);
  qint64 currentRun() const { return run_id_; }
  // "loss" (series "train", "val"), "accuracy" ("train", "val"), "throughput" ("samples"),
  // "memory" ("current").
  MetricChart* chart(const QString& name) const;
  QProgressBar* progressBar() const { return progress_; }

 public Q_SLOTS:
  void onStep(qint64 run_id, const lathe::ui::StepPoint& p);
  void onEval(qint64 run_id, const lathe::ui::EvalPoint& p);
  void onLog(qint64 run_id, const QString& line);
  void onProgress(qint64 run_id, double fraction, double eta_s);
  void onStatus(qint64 run_id, const QString& status, const QString& message);

 Q_SIGNALS:
  void cancelRequested(qint64 run_id);
  void pauseRequested(qint64 run_id);
  void resumeRequested(qint64 run_id);

 private:
  struct Trace {
    QVector<QPointF> loss, val_loss, accuracy, val_accuracy, samples, memory;
    QStringList log;
    double progress = 0, eta_s = -1;
    QString status = "queued", message;
  };
  void loadFromStore(qint64 run_id);
  Trace readTrace(qint64 run_id) const;
  void showTrace(const Trace& t);
  void updateHeader(const QString& status, const QString& message);
  void updateProgress(double fraction, double eta_s);

  store::RunStore* store_;
  qint64 run_id_ = 0;
  QString run_name_;
  std::map<qint64, Trace> live_;
  std::map<QString, MetricChart*> charts_;
  QLabel* header_ = nullptr;
  QLabel* eta_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QPlainTextEdit* log_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QPushButton* pause_ = nullptr;
};

}  // namespace lathe::ui
