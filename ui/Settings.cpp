#include "ui/Settings.h"

#include <QSettings>

#include "core/store/RunStore.h"

namespace lathe::ui {

WorkbenchSettings WorkbenchSettings::load() {
  QSettings s;
  WorkbenchSettings out;
  out.db_path = s.value("store/db_path").toString();
  return out;
}

void WorkbenchSettings::save() const {
  QSettings s;
  s.setValue("store/db_path", db_path);
}

QString WorkbenchSettings::resolvedDbPath() const {
  if (!db_path.isEmpty()) return db_path;
  try {
    return QString::fromStdString(store::RunStore::defaultPath());
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace lathe::ui
