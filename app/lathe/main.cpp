// lathe: the GUI workbench. `lathe --version` prints the build's capabilities without a display;
// `lathe --db PATH` opens (or creates) that run database instead of the default one.
#include <QApplication>
#include <QIcon>
#include <cstring>
#include <iostream>
#include <string>

#include "core/base/BuildInfo.h"
#include "kernels/Backends.h"
#include "ui/MainWindow.h"

int main(int argc, char** argv) {
  try {
    lathe::registerBackends();
  } catch (const std::exception& e) {
    std::cerr << "lathe: " << e.what() << "\n";
    return 2;
  }
  QString db_given;  // --db PATH: used for this session, not remembered
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0 || std::strcmp(argv[i], "-V") == 0) {
      lathe::addCapability("Qt", qVersion());
      std::cout << lathe::versionReport("lathe");
      return 0;
    }
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::cout << "usage: lathe [--db PATH] [--version] [Qt options]\n"
                   "Opens the Lathe workbench.\n"
                   "  --db PATH   the run database for this session (default: the one last opened "
                   "with File > Open database, else "
                   "$XDG_DATA_HOME/lathe/runs.db or ~/.local/share/lathe/runs.db)\n";
      return 0;
    }
    if (std::strcmp(argv[i], "--db") == 0 || std::strncmp(argv[i], "--db=", 5) == 0) {
      std::string path;
      if (argv[i][4] == '=') {
        path = argv[i] + 5;
      } else if (i + 1 < argc) {
        path = argv[++i];
      }
      if (path.empty()) {
        std::cerr << "lathe: --db needs a path\n";
        return 2;
      }
      db_given = QString::fromLocal8Bit(path.c_str());
    }
  }
  QApplication app(argc, argv);
  QApplication::setApplicationName("Lathe");
  QApplication::setOrganizationName("Lathe");
  QApplication::setApplicationVersion(lathe::version());
  QApplication::setWindowIcon(QIcon(":/lathe/icons/lathe.svg"));
  lathe::addCapability("Qt", qVersion());
  lathe::ui::WorkbenchSettings settings = lathe::ui::WorkbenchSettings::load();
  settings.db_override = db_given;
  lathe::ui::MainWindow window(settings);
  window.show();
  return QApplication::exec();
}
