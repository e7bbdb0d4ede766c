#include "core/run/Export.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/base/Error.h"
#include "core/io/AtomicFile.h"

namespace lathe::run {

namespace fs = std::filesystem;

store::Artifact exportRunModel(store::RunStore& db, int64_t run_id, const std::string& out_path,
                               const std::string& format) {
  LATHE_CHECK(format == "safetensors", "export of run ", run_id, ": format '", format,
              "' is not supported; expected safetensors");
  std::optional<store::Artifact> model;
  for (const store::Artifact& a : db.artifacts(run_id))
    if (a.kind == "model") model = a;
  LATHE_CHECK(model.has_value(), "run ", run_id,
              " has no trained model (it is not done, or was run without saving)");
  std::ifstream in(model->path, std::ios::binary);
  LATHE_CHECK(in.good(), "the model file of run ", run_id, " is missing: ", model->path);
  std::stringstream bytes;
  bytes << in.rdbuf();
  writeFileAtomically(out_path, bytes.str());
  store::Artifact a;
  a.run_id = run_id;
  a.kind = "export";
  a.path = fs::absolute(out_path).string();
  a.bytes = static_cast<int64_t>(fs::file_size(out_path));
  a.hash = model->hash;
  a.id = db.addArtifact(a);
  return a;
}

}  // namespace lathe::run
