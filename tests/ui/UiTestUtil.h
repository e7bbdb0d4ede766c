// Helpers shared by the QtTest programs.
#pragma once

#include <QDialog>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QTest>
#include <QTextStream>
#include <QWidget>
#include <cstdint>

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

// Three Gaussian-ish blobs in 4 dimensions (columns f0..f3, label last), deterministic: a CSV
// classification dataset small enough for a test to train on in a second.
inline void writeBlobs(const QString& path, int rows) {
  QFile f(path);
  QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Text));
  QTextStream out(&f);
  out << "f0,f1,f2,f3,label\n";
  uint32_t s = 12345;
  auto noise = [&] {
    s = s * 1664525u + 1013904223u;
    return (static_cast<double>(s >> 8) / (1 << 24) - 0.5) * 1.2;
  };
  for (int i = 0; i < rows; ++i) {
    const int c = i % 3;
    for (int k = 0; k < 4; ++k) out << (c == k % 3 ? 1.5 : -0.5) + noise() << ",";
    out << c << "\n";
  }
}

// The child widget `name` of type T under w, with a warning naming it when it is missing.
template <typename T>
T* child(QWidget* w, const QString& name) {
  T* c = w->findChild<T*>(name);
  if (c == nullptr) qWarning("no child %s", qPrintable(name));
  return c;
}

// Saves a screenshot of w as NAME.png under $LATHE_TEST_ARTIFACTS (nothing when it is unset).
inline void saveShot(QWidget& w, const QString& name) {
  const QString dir = qEnvironmentVariable("LATHE_TEST_ARTIFACTS");
  if (dir.isEmpty()) return;
  QDir().mkpath(dir);
  w.grab().save(dir + "/" + name + ".png");
}

}  // namespace lathe::ui::test
