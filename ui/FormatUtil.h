// Small formatting and parsing helpers shared by the panels: human-readable counts, bytes and
// FLOPs, and "256, 128"-style integer lists.
#pragma once

#include <QString>
#include <nlohmann/json.hpp>
#include <optional>

namespace lathe::ui {

QString formatCount(double n);    // 1.23 M, 45.6 k, 789
QString formatBytes(double b);    // 4.7 MiB
QString formatFlops(double f);    // 2.3 MFLOP
QString formatSeconds(double s);  // 1 h 02 min, 3 min 05 s, 12 s
// "256, 128" or "256 128" -> [256, 128]; an empty text is []; nullopt when a part is not an
// integer.
std::optional<nlohmann::json> parseIntList(const QString& text);

}  // namespace lathe::ui
