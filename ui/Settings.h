// Workbench settings, the one place that reads and writes them: the run database (the command
// line's `lathe --db PATH` overrides the remembered choice, which overrides
// RunStore::defaultPath()), the recent files and the window layout. They live in the
// platform's QSettings (organisation and application "Lathe") or, for tests, in an ini file; a
// default-constructed object is never saved.
#pragma once

#include <QByteArray>
#include <QString>
#include <QStringList>

namespace lathe::ui {

struct WorkbenchSettings {
  static constexpr int kMaxRecentFiles = 10;

  QString db_path;                    // the remembered choice; empty: RunStore::defaultPath()
  QString db_override;                // from the command line: used, never saved
  QStringList recent_files;           // newest first: run configs, model files, databases
  QByteArray geometry, window_state;  // QMainWindow::saveGeometry / saveState

  // From the platform's QSettings ("store/db_path", "recent/files", "window/...").
  static WorkbenchSettings load();
  // From an ini file (created by save() when missing).
  static WorkbenchSettings loadFrom(const QString& ini_file);
  // Writes everything but db_override where it was loaded from; false (nothing written) for a
  // settings object that was not loaded.
  bool save() const;
  bool isPersistent() const { return persistent_; }

  // db_override, else db_path, else RunStore::defaultPath() (empty if that throws: no HOME).
  QString resolvedDbPath() const;
  // Puts `path` first in recent_files (once), keeping at most kMaxRecentFiles.
  void addRecentFile(const QString& path);

 private:
  bool persistent_ = false;
  QString ini_file_;  // empty: the platform's QSettings
};

}  // namespace lathe::ui
