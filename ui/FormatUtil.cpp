#include "ui/FormatUtil.h"

#include <QRegularExpression>
#include <QStringList>
#include <cmath>

namespace lathe::ui {
namespace {

QString scaled(double v, const char* const* units, int n_units, double step, const char* suffix) {
  int u = 0;
  while (std::abs(v) >= step && u + 1 < n_units) {
    v /= step;
    ++u;
  }
  const QString num = u == 0 ? QString::number(v, 'g', 4) : QString::number(v, 'f', v < 10 ? 2 : 1);
  return QString("%1 %2%3").arg(num, units[u], suffix).trimmed();
}

}  // namespace

QString formatCount(double n) {
  static const char* const units[] = {"", "k", "M", "G", "T"};
  return scaled(n, units, 5, 1000, "");
}

QString formatBytes(double b) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  return scaled(b, units, 5, 1024, "");
}

QString formatFlops(double f) {
  static const char* const units[] = {"", "k", "M", "G", "T", "P"};
  return scaled(f, units, 6, 1000, "FLOP");
}

QString formatSeconds(double s) {
  if (!std::isfinite(s) || s < 0) return QStringLiteral("?");
  const auto t = static_cast<long long>(std::llround(s));
  if (t >= 3600)
    return QString("%1 h %2 min").arg(t / 3600).arg((t % 3600) / 60, 2, 10, QChar('0'));
  if (t >= 60) return QString("%1 min %2 s").arg(t / 60).arg(t % 60, 2, 10, QChar('0'));
  return QString("%1 s").arg(t);
}

std::optional<nlohmann::json> parseIntList(const QString& text) {
  nlohmann::json out = nlohmann::json::array();
  for (const QString& part : text.split(QRegularExpression("[,\\s]+"), Qt::SkipEmptyParts)) {
    bool ok = false;
    const qlonglong v = part.toLongLong(&ok);
    if (!ok) return std::nullopt;
    out.push_back(v);
  }
  return out;
}

}  // namespace lathe::ui
