#include "ui/Settings.h"

#include <QFileInfo>
#include <QSettings>
#include <memory>

#include "core/store/RunStore.h"

namespace lathe::ui {
namespace {

std::unique_ptr<QSettings> open(const QString& ini_file) {
  if (ini_file.isEmpty()) return std::make_unique<QSettings>("Lathe", "Lathe");
  return std::make_unique<QSettings>(ini_file, QSettings::IniFormat);
}

WorkbenchSettings read(QSettings& s) {
  WorkbenchSettings out;
  out.db_path = s.value("store/db_path").toString();
  out.recent_files = s.value("recent/files").toStringList();
  while (out.recent_files.size() > WorkbenchSettings::kMaxRecentFiles)
    out.recent_files.removeLast();
  out.geometry = s.value("window/geometry").toByteArray();
  out.window_state = s.value("window/state").toByteArray();
  return out;
}

}  // namespace

WorkbenchSettings WorkbenchSettings::load() {
  WorkbenchSettings out = read(*open({}));
  out.persistent_ = true;
  return out;
}

WorkbenchSettings WorkbenchSettings::loadFrom(const QString& ini_file) {
  WorkbenchSettings out = read(*open(ini_file));
  out.persistent_ = true;
  out.ini_file_ = ini_file;
  return out;
}

bool WorkbenchSettings::save() const {
  if (!persistent_) return false;
  std::unique_ptr<QSettings> s = open(ini_file_);
  s->setValue("store/db_path", db_path);
  s->setValue("recent/files", recent_files);
  s->setValue("window/geometry", geometry);
  s->setValue("window/state", window_state);
  s->sync();
  return s->status() == QSettings::NoError;
}

QString WorkbenchSettings::resolvedDbPath() const {
  if (!db_override.isEmpty()) return db_override;
  if (!db_path.isEmpty()) return db_path;
  try {
    return QString::fromStdString(store::RunStore::defaultPath());
  } catch (const std::exception&) {
    return {};
  }
}

void WorkbenchSettings::addRecentFile(const QString& path) {
  if (path.isEmpty()) return;
  const QString abs = QFileInfo(path).absoluteFilePath();
  recent_files.removeAll(abs);
  recent_files.prepend(abs);
  while (recent_files.size() > kMaxRecentFiles) recent_files.removeLast();
}

}  // namespace lathe::ui
