// Shared by the optimizer golden tests (OptimTest.cpp, OptimExtraTest.cpp): the golden model of
// scripts/make_golden_optim.py and the readers of its JSON files under tests/data/golden/.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/nn/Layers.h"
#include "core/nn/Module.h"
#include "core/optim/Optimizer.h"

namespace lathe::optim::golden {

// ids [B, T] -> Embedding(6, 4) -> Linear(4, 3) -> LayerNorm(3) -> Linear(3, 2, no bias).
// Matrices (decayed under matricesOnly): fc.weight, head.weight.
class TinyNet : public Module {
 public:
  explicit TinyNet(const ModuleOptions& opt = {}) : Module("TinyNet") {
    emb_ = registerModule("emb", std::make_shared<Embedding>(6, 4, opt));
    fc_ = registerModule("fc", std::make_shared<Linear>(4, 3, true, opt));
    ln_ = registerModule("ln", std::make_shared<LayerNorm>(3, 1e-5, true, opt));
    head_ = registerModule("head", std::make_shared<Linear>(3, 2, false, opt));
  }
  Tensor forward(const Tensor& ids) override {
    return child(head_)(child(ln_)(child(fc_)(child(emb_)(ids))));
  }

 private:
  size_t emb_, fc_, ln_, head_;
};

// {"shape": [...], "data": [...]} as an f64 tensor.
inline Tensor unpack(const nlohmann::json& j) {
  Shape shape = j.at("shape").get<Shape>();
  std::vector<double> data = j.at("data").get<std::vector<double>>();
  if (shape.empty()) return Tensor::scalar(data.at(0), DType::f64);
  return Tensor::fromVector(data, shape, DType::f64);
}

// tests/data/golden/<name>.json
inline nlohmann::json loadJson(const std::string& name) {
  const std::string path = std::string(LATHE_TEST_DATA_DIR) + "/golden/" + name + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing golden file " + path);
  return nlohmann::json::parse(in);
}

inline DecayRule decayRule(const nlohmann::json& o) {
  return o.at("decay").get<std::string>() == "all" ? DecayRule::all : DecayRule::matricesOnly;
}

}  // namespace lathe::optim::golden
