// The workbench's main window: composes the Setup, Monitor and Compare panels, the menus and
// the status bar. It owns no engine logic (see DESIGN.md, UI); panels live in ui/panels/.
#pragma once

#include <QMainWindow>

class QTabWidget;

namespace lathe::ui {

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(QWidget* parent = nullptr);

  QTabWidget* tabs() const { return tabs_; }

 private:
  void buildMenus();
  void showAbout();

  QTabWidget* tabs_ = nullptr;
};

}  // namespace lathe::ui
