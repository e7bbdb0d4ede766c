// CSV tokenizing (quotes, delimiters, line ends) and conversion to feature and label tensors.
// Line numbers in errors are 1-based physical lines, columns 1-based fields.
#include "core/data/Csv.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "core/data/Bytes.h"

namespace lathe::data {

namespace {

struct Row {
  size_t line = 0;
  std::vector<std::string> cells;
};

std::vector<Row> splitRows(std::string_view s, const std::string& name, char delim) {
  std::vector<Row> rows;
  size_t i = 0, line = 1;
  if (s.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // UTF-8 byte order mark
  while (i < s.size()) {
    Row row;
    row.line = line;
    std::string cell;
    bool row_done = false;
    while (!row_done) {
      cell.clear();
      if (i < s.size() && s[i] == '"') {
        const size_t open_line = line;
        ++i;
        while (true) {
          if (i >= s.size())
            fail(name, ": line ", open_line, ", column ", row.cells.size() + 1,
                 ": unterminated quoted field");
          if (s[i] == '"') {
            if (i + 1 < s.size() && s[i + 1] == '"') {
              cell += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (s[i] == '\n') ++line;
          cell += s[i++];
        }
        if (i < s.size() && s[i] != delim && s[i] != '\n' && s[i] != '\r')
          fail(name, ": line ", line, ", column ", row.cells.size() + 1,
               ": unexpected character after a closing quote");
      } else {
        while (i < s.size() && s[i] != delim && s[i] != '\n' && s[i] != '\r') cell += s[i++];
      }
      row.cells.push_back(cell);
      if (i < s.size() && s[i] == delim) {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == '\r') ++i;
      if (i < s.size() && s[i] == '\n') ++i;
      ++line;
      row_done = true;
    }
    const bool blank = row.cells.size() == 1 && row.cells[0].empty();
    if (!blank) rows.push_back(std::move(row));
  }
  return rows;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// A cell as shown in an error message: at most 40 characters.
std::string shown(const std::string& cell) {
  return cell.size() <= 40 ? cell : cell.substr(0, 37) + "...";
}

std::optional<double> parseNumber(std::string_view cell) {
  cell = trim(cell);
  if (!cell.empty() && cell.front() == '+') cell.remove_prefix(1);
  if (cell.empty()) return std::nullopt;
  double v = 0.0;
  const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (ec != std::errc() || end != cell.data() + cell.size()) return std::nullopt;
  return v;
}

}  // namespace

CsvTable parseCsv(std::string_view text, const std::string& name, const CsvOptions& options) {
  LATHE_CHECK(options.delimiter != '"' && options.delimiter != '\n' && options.delimiter != '\r',
              name, ": the delimiter cannot be a quote or a line end");
  std::vector<Row> rows = splitRows(text, name, options.delimiter);
  LATHE_CHECK(!rows.empty(), name, ": the CSV file has no rows");
  const size_t ncols = rows[0].cells.size();
  LATHE_CHECK(ncols >= 2, name, ": line ", rows[0].line, ": ", ncols,
              " column(s); expected at least one feature and a label");
  bool header = false;
  if (options.header) {
    header = *options.header;
  } else {
    for (const std::string& c : rows[0].cells) header = header || !parseNumber(c);
  }
  CsvTable t;
  for (size_t k = 0; k < ncols; ++k)
    t.columns.push_back(header ? std::string(trim(rows[0].cells[k]))
                               : "column_" + std::to_string(k));
  size_t label = 0;
  if (!options.label_name.empty()) {
    LATHE_CHECK(header, name, ": label column '", options.label_name,
                "' was asked for by name but the file has no header row");
    const auto it = std::find(t.columns.begin(), t.columns.end(), options.label_name);
    if (it == t.columns.end()) {
      std::string all;
      for (const auto& c : t.columns) all += (all.empty() ? "" : ", ") + c;
      fail(name, ": no column named '", options.label_name, "' (columns: ", all, ")");
    }
    label = static_cast<size_t>(it - t.columns.begin());
  } else {
    const int64_t idx = options.label_index < 0 ? static_cast<int64_t>(ncols) + options.label_index
                                                : options.label_index;
    LATHE_CHECK(idx >= 0 && idx < static_cast<int64_t>(ncols), name, ": label column index ",
                options.label_index, " is out of range for ", ncols, " columns");
    label = static_cast<size_t>(idx);
  }
  const size_t first = header ? 1 : 0;
  LATHE_CHECK(rows.size() > first, name, ": the CSV file has a header but no data rows");
  const auto n = static_cast<int64_t>(rows.size() - first);
  const auto nf = static_cast<int64_t>(ncols - 1);
  t.features = Tensor::empty({n, nf}, DType::f32);
  float* f = t.features.data<float>();
  std::vector<std::string> raw_labels;
  std::vector<double> num_labels;
  bool all_int = true;
  for (size_t r = first; r < rows.size(); ++r) {
    const Row& row = rows[r];
    LATHE_CHECK(row.cells.size() == ncols, name, ": line ", row.line, ": ", row.cells.size(),
                " columns, expected ", ncols, " as in line ", rows[0].line);
    int64_t j = 0;
    for (size_t k = 0; k < ncols; ++k) {
      if (k == label) continue;
      const std::optional<double> v = parseNumber(row.cells[k]);
      if (!v)
        fail(name, ": line ", row.line, ", column ", k + 1, " ('", t.columns[k],
             "'): expected a number, got '", shown(row.cells[k]), "'");
      f[static_cast<int64_t>(r - first) * nf + j++] = static_cast<float>(*v);
    }
    const std::optional<double> lv = parseNumber(row.cells[label]);
    if (options.regression && !lv)
      fail(name, ": line ", row.line, ", column ", label + 1, " ('", t.columns[label],
           "'): expected a numeric label, got '", shown(row.cells[label]), "'");
    all_int =
        all_int && lv && std::isfinite(*lv) && *lv == std::floor(*lv) && *lv >= 0 && *lv < 9.0e15;
    num_labels.push_back(lv.value_or(0.0));
    raw_labels.emplace_back(trim(row.cells[label]));
  }
  if (options.regression) {
    t.labels = Tensor::empty({n}, DType::f32);
    for (int64_t i = 0; i < n; ++i)
      t.labels.data<float>()[i] = static_cast<float>(num_labels[static_cast<size_t>(i)]);
    return t;
  }
  t.labels = Tensor::empty({n}, DType::i64);
  int64_t* l = t.labels.data<int64_t>();
  if (all_int) {
    for (int64_t i = 0; i < n; ++i) l[i] = static_cast<int64_t>(num_labels[static_cast<size_t>(i)]);
    return t;
  }
  std::map<std::string, int64_t> ids;
  for (const std::string& s : raw_labels) ids.emplace(s, 0);
  for (auto& [s, id] : ids) {
    id = static_cast<int64_t>(t.class_names.size());
    t.class_names.push_back(s);
  }
  for (int64_t i = 0; i < n; ++i) l[i] = ids.at(raw_labels[static_cast<size_t>(i)]);
  return t;
}

CsvTable loadCsv(const std::string& path, const CsvOptions& options) {
  const Bytes bytes = readFile(path);
  return parseCsv(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path,
                  options);
}

std::shared_ptr<ArrayDataset> makeCsvDataset(const CsvTable& table, const std::string& name) {
  return std::make_shared<ArrayDataset>(table.features, table.labels, 1.0, name);
}

std::shared_ptr<ArrayDataset> loadCsvDataset(const std::string& path, const CsvOptions& options) {
  return makeCsvDataset(loadCsv(path, options), path);
}

}  // namespace lathe::data
