// lathe: the GUI workbench. `lathe --version` prints the build's capabilities without a display;
// `lathe --db PATH` opens (or creates) that run database instead of the default one.
#include <unistd.h>

#include <QApplication>
#include <QIcon>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "core/base/BuildInfo.h"
#include "kernels/Backends.h"
#include "ui/MainWindow.h"

namespace {

// OpenMP worker threads that spin while they wait starve everything else on the machine, this
// window included. On the 2-core development machine, with two other busy processes, a training
// step of the MLP example took 72 ms with spinning workers and 6 ms with sleeping ones; idle, the
// sleeping ones cost about 19% (docs/PERFORMANCE.md). The workbench always shares the CPU with
// its own GUI thread, so it asks for passive waiting. libgomp reads OMP_WAIT_POLICY only when it
// loads, so the process sets it and re-executes itself once. A user's own setting wins, and if
// the exec fails the process just goes on with the default.
void preferPassiveOpenMp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);
}

}  // namespace

int main(int argc, char** argv) {
  preferPassiveOpenMp(argv);
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
