// Exporting a finished run's model: the one implementation behind `lathe-cli export` and the
// workbench's Export action.
#pragma once

#include <cstdint>
#include <string>

#include "core/store/RunStore.h"

namespace lathe::run {

// Copies run `run_id`'s trained model (its "model" artifact: safetensors with the architecture
// spec in the metadata) to `out_path` atomically and records an "export" artifact with the
// absolute path, size and the model's hash, which it returns. format: "safetensors" (the only
// one so far). Throws lathe::Error naming the run when it has no model, its file is missing or
// the output cannot be written; the store is unchanged then.
store::Artifact exportRunModel(store::RunStore& db, int64_t run_id, const std::string& out_path,
                               const std::string& format = "safetensors");

}  // namespace lathe::run
