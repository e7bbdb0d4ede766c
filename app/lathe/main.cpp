// lathe: the GUI workbench. `lathe --version` prints the build's capabilities without a display.
#include <QApplication>
#include <QIcon>
#include <cstring>
#include <iostream>

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
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0 || std::strcmp(argv[i], "-V") == 0) {
      lathe::addCapability("Qt", qVersion());
      std::cout << lathe::versionReport("lathe");
      return 0;
    }
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::cout << "usage: lathe [--version] [Qt options]\nOpens the Lathe workbench.\n";
      return 0;
    }
  }
  QApplication app(argc, argv);
  QApplication::setApplicationName("Lathe");
  QApplication::setOrganizationName("Lathe");
  QApplication::setApplicationVersion(lathe::version());
  QApplication::setWindowIcon(QIcon(":/lathe/icons/lathe.svg"));
  lathe::addCapability("Qt", qVersion());
  lathe::ui::MainWindow window;
  window.show();
  return QApplication::exec();
}
