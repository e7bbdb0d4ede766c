// CSV tables of numeric features and one label column. RFC 4180 quoting ("a,b", "" for a
// quote), \n or \r\n line ends, a header row detected (or forced), the label chosen by name or
// index. Labels that are all integers are class ids; otherwise they are class names, numbered in
// sorted order. A cell that is not a number is an error naming the line and column.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/data/Dataset.h"

namespace lathe::data {

struct CsvOptions {
  char delimiter = ',';
  // nullopt: a header is assumed when any cell of the first row is not a number.
  std::optional<bool> header;
  std::string label_name;   // the label column by header name (needs a header), or
  int label_index = -1;     // by index; negative counts from the end (-1 = the last column)
  bool regression = false;  // labels are f32 values instead of class ids
};

struct CsvTable {
  std::vector<std::string> columns;      // header names (or "column_<k>")
  std::vector<std::string> class_names;  // for named classes; empty for integer ids
  Tensor features;                       // f32 [N, F]
  Tensor labels;                         // i64 [N] class ids, or f32 [N] for regression
};

CsvTable parseCsv(std::string_view text, const std::string& name, const CsvOptions& options = {});
CsvTable loadCsv(const std::string& path, const CsvOptions& options = {});
// The table as a dataset: input f32 [F], target i64 (or f32) scalar.
std::shared_ptr<ArrayDataset> makeCsvDataset(const CsvTable& table, const std::string& name);
std::shared_ptr<ArrayDataset> loadCsvDataset(const std::string& path,
                                             const CsvOptions& options = {});

}  // namespace lathe::data
