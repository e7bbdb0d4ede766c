// Workbench settings: where the run database lives (and, next to it, the runs' files). One
// place reads them: the command line (`lathe --db PATH`) overrides QSettings, which overrides
// RunStore::defaultPath().
#pragma once

#include <QString>

namespace lathe::ui {

struct WorkbenchSettings {
  QString db_path;  // empty: RunStore::defaultPath()

  // From QSettings ("store/db_path"); empty when never set.
  static WorkbenchSettings load();
  void save() const;
  // db_path, or RunStore::defaultPath() when empty (empty if that throws: no HOME).
  QString resolvedDbPath() const;
};

}  // namespace lathe::ui
