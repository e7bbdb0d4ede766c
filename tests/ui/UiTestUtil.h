// Helpers shared by the QtTest programs.
#pragma once

#include <QDialog>
#include <QFileDialog>
#include <QTest>
#include <QWidget>

namespace lathe::ui::test {

// Picks `path` in the modeless file dialog `name` that a click opened under `parent` (waits up
// to ~2 s for it to appear); false when it never did.
inline bool acceptFileDialog(QWidget* parent, const QString& name, const QString& path) {
  QFileDialog* d = nullptr;
  for (int i = 0; i < 200 && d == nullptr; ++i) {
    d = parent->findChild<QFileDialog*>(name);
    if (d == nullptr) QTest::qWait(10);
  }
  if (d == nullptr) return false;
  d->selectFile(path);
  static_cast<QDialog*>(d)->accept();  // QFileDialog::accept is protected
  return true;
}

}  // namespace lathe::ui::test
