// Datasets from the "dataset" object of a run config: which files, how they are split,
// normalised and augmented. One place turns a config into train / validation / test datasets,
// for the CLI, the GUI and the benchmarks alike.
//
//   {"format": "mnist", "path": "/usr/share/datasets/fashion-mnist"}      IDX (.gz too)
//   {"format": "cifar10", "path": "DIR"}                                 CIFAR-10 binary
//   {"format": "npz", "path": "F.npz", "inputs_key": "x", "targets_key": "y"}
//   {"format": "npy", "inputs": "X.npy", "targets": "Y.npy"}
//   {"format": "csv", "path": "F.csv", "label_column": "species"}       (name or index)
//   {"format": "text", "path": "FILE or DIR", "tokenizer": "bytes" | "gpt2",
//    "vocab": "DIR", "block_size": 128}
// Common fields: val_fraction (0.1: the validation split taken from the training data, seeded;
// text takes the last fraction of the token stream), test_fraction (formats without their own
// test files: split off before validation; 0.1), normalize (false, true = per-channel statistics
// of the training split, or {"mean": [...], "std": [...]}), augment ({"crop_padding": 4,
// "flip": true} for images), limit_train / limit_test (use only the first N examples: quick
// runs and tests). Unknown fields are errors naming the path ("dataset.pth: unknown field").
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/data/Dataset.h"

namespace lathe::data {

enum class TaskKind { classification, regression, language_model };
const char* taskKindName(TaskKind k);

struct LoadedData {
  DatasetPtr train, val, test;  // val or test may be null when their fraction is 0
  TaskKind task = TaskKind::classification;
  Shape input_shape;        // one example's input ([1, 28, 28], [block_size], ...)
  int64_t classes = 0;      // classification: number of classes (max label + 1)
  int64_t vocab_size = 0;   // language modelling
  std::string description;  // "Fashion-MNIST IDX: 54000 train / 6000 val / 10000 test"
};

// Validates the spec and fills defaults (the normalised form stored with a run).
nlohmann::json normalizeDatasetSpec(const nlohmann::json& spec,
                                    const std::string& path = "dataset");
// Loads the data; relative file paths resolve against `base_dir` (the config's folder) when
// it is not empty. Errors name the field or the file.
LoadedData loadDataset(const nlohmann::json& spec, uint64_t seed, const std::string& base_dir = {},
                       const std::string& path = "dataset");

}  // namespace lathe::data
