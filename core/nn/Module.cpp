// Module registry, traversal, state dict and device/dtype moves. Traversal order is
// registration order: a module's parameters, then its buffers, then its children, depth first.
// Tied tensors are recognised by TensorImpl identity.
#include "core/nn/Module.h"

#include <map>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/autograd/Autograd.h"

namespace lathe {

const char* checkpointModeName(CheckpointMode m) {
  switch (m) {
    case CheckpointMode::none: return "none";
    case CheckpointMode::full: return "full";
    case CheckpointMode::selective: return "selective";
  }
  return "?";
}

CheckpointMode parseCheckpointMode(const std::string& name, const std::string& what) {
  if (name == "none") return CheckpointMode::none;
  if (name == "full") return CheckpointMode::full;
  if (name == "selective") return CheckpointMode::selective;
  throw Error(what + ": expected \"none\", \"full\" or \"selective\", got \"" + name + "\"");
}
namespace {

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> parts;
  if (path.empty()) return parts;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string joinName(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// "a, b, c, ... and 7 more" for error messages.
std::string listNames(const std::vector<std::string>& names, size_t limit = 12) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > limit) out += ", ... and " + std::to_string(names.size() - limit) + " more";
  return out;
}

std::string countString(int64_t n) {
  std::ostringstream os;
  if (n >= 1000000)
    os.precision(4), os << static_cast<double>(n) / 1e6 << "M";
  else if (n >= 1000)
    os.precision(4), os << static_cast<double>(n) / 1e3 << "K";
  else
    os << n;
  return os.str();
}

}  // namespace

void rebindTensor(const Tensor& target, const Tensor& source) {
  LATHE_CHECK(target.defined() && source.defined(), "rebindTensor: both tensors must be defined");
  LATHE_CHECK(target.shape() == source.shape(), "rebindTensor: cannot re-point ", describe(target),
              " at memory of shape ", describe(source));
  if (target.implPtr() == source.implPtr()) return;
  TensorImpl* t = target.implPtr();
  const TensorImpl* s = source.implPtr();
  t->storage = s->storage;
  t->strides = s->strides;
  t->offset = s->offset;
  t->dtype = s->dtype;
}

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Tensor Module::forward(const Tensor& /*x*/) {
  fail("module ", type_name_, " has no single-tensor forward; call its own forward overload");
}

void Module::checkNewName(const std::string& name, const char* what) const {
  LATHE_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_, ": ", what,
              " name '", name, "' must be non-empty and contain no '.'");
  bool taken = false;
  for (const auto& p : params_) taken = taken || p.first == name;
  for (const auto& b : buffers_) taken = taken || b.name == name;
  for (const auto& c : children_) taken = taken || c.first == name;
  LATHE_CHECK(!taken, type_name_, ": cannot register ", what, " '", name,
              "': the name is already taken");
}

Tensor Module::registerParameter(const std::string& name, const Tensor& value, bool requires_grad) {
  checkNewName(name, "parameter");
  LATHE_CHECK(value.defined(), type_name_, ": parameter '", name, "' is undefined");
  Tensor p = value.isLeaf() ? value : value.detach();
  if (p.storage()->tag() != MemoryTag::parameters) p.storage()->setTag(MemoryTag::parameters);
  p.setRequiresGrad(requires_grad && isFloating(p.dtype()));
  params_.emplace_back(name, p);
  return p;
}

Tensor Module::registerBuffer(const std::string& name, const Tensor& value, bool persistent) {
  checkNewName(name, "buffer");
  LATHE_CHECK(value.defined(), type_name_, ": buffer '", name, "' is undefined");
  Tensor b = value.isLeaf() && !value.requiresGrad() ? value : value.detach();
  if (b.storage()->tag() != MemoryTag::parameters) b.storage()->setTag(MemoryTag::parameters);
  buffers_.push_back({name, b, persistent});
  return b;
}

size_t Module::registerModule(const std::string& name, std::shared_ptr<Module> module) {
  checkNewName(name, "child module");
  LATHE_CHECK(module != nullptr, type_name_, ": child module '", name, "' is null");
  children_.emplace_back(name, std::move(module));
  return children_.size() - 1;
}

Module& Module::child(size_t slot) const {
  LATHE_CHECK(slot < children_.size(), type_name_, ": no child in slot ", slot);
  return *children_[slot].second;
}

void Module::failChildType(size_t slot) const {
  fail(type_name_, ": child '", children_[slot].first, "' was replaced by a ",
       children_[slot].second->typeName(),
       ", which does not provide the interface this module calls it through");
}

std::shared_ptr<Module> Module::find(const std::string& path) const {
  const Module* cur = this;
  std::shared_ptr<Module> found;
  std::string walked;
  for (const std::string& part : splitPath(path)) {
    std::shared_ptr<Module> next;
    std::vector<std::string> names;
    for (const auto& c : cur->children_) {
      names.push_back(c.first);
      if (c.first == part) next = c.second;
    }
    LATHE_CHECK(next != nullptr, "module path '", path,
                "': ", walked.empty() ? type_name_ : "'" + walked + "' (" + cur->typeName() + ")",
                " has no child '", part, "'",
                names.empty() ? std::string(" (it has no children)")
                              : " (children: " + listNames(names) + ")");
    walked = joinName(walked, part);
    found = next;
    cur = next.get();
  }
  LATHE_CHECK(found != nullptr, "module path '", path, "' is empty: name a descendant");
  return found;
}

void Module::replaceChild(const std::string& path, std::shared_ptr<Module> module) {
  LATHE_CHECK(module != nullptr, "replaceChild('", path, "'): the new module is null");
  const size_t dot = path.rfind('.');
  const std::string parent_path = dot == std::string::npos ? "" : path.substr(0, dot);
  const std::string name = dot == std::string::npos ? path : path.substr(dot + 1);
  Module* parent = parent_path.empty() ? this : find(parent_path).get();
  for (auto& c : parent->children_) {
    if (c.first == name) {
      c.second = std::move(module);
      return;
    }
  }
  find(path);  // throws with the list of children
  fail("replaceChild('", path, "'): not found");
}

void Module::visitTensors(const std::string& prefix, bool params, bool buffers,
                          bool persistent_only,
                          const std::function<void(const std::string&, const Tensor&)>& fn) const {
  if (params)
    for (const auto& p : params_) fn(joinName(prefix, p.first), p.second);
  if (buffers)
    for (const auto& b : buffers_)
      if (b.persistent || !persistent_only) fn(joinName(prefix, b.name), b.tensor);
  for (const auto& c : children_)
    c.second->visitTensors(joinName(prefix, c.first), params, buffers, persistent_only, fn);
}

Tensor Module::parameter(const std::string& dotted_name) const {
  const size_t dot = dotted_name.rfind('.');
  const Module* owner = dot == std::string::npos ? this : find(dotted_name.substr(0, dot)).get();
  const std::string name = dot == std::string::npos ? dotted_name : dotted_name.substr(dot + 1);
  for (const auto& p : owner->params_)
    if (p.first == name) return p.second;
  fail(type_name_, " has no parameter '", dotted_name, "'");
}

Tensor Module::buffer(const std::string& dotted_name) const {
  const size_t dot = dotted_name.rfind('.');
  const Module* owner = dot == std::string::npos ? this : find(dotted_name.substr(0, dot)).get();
  const std::string name = dot == std::string::npos ? dotted_name : dotted_name.substr(dot + 1);
  for (const auto& b : owner->buffers_)
    if (b.name == name) return b.tensor;
  fail(type_name_, " has no buffer '", dotted_name, "'");
}

NamedTensors Module::namedParameters() const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  visitTensors("", true, false, false, [&](const std::string& n, const Tensor& t) {
    if (seen.insert(t.implPtr()).second) out.emplace_back(n, t);
  });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : namedParameters()) out.push_back(p.second);
  return out;
}

NamedTensors Module::namedBuffers(bool persistent_only) const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  visitTensors("", false, true, persistent_only, [&](const std::string& n, const Tensor& t) {
    if (seen.insert(t.implPtr()).second) out.emplace_back(n, t);
  });
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::namedModules() {
  std::vector<std::pair<std::string, Module*>> out;
  std::function<void(const std::string&, Module*)> walk = [&](const std::string& n, Module* m) {
    out.emplace_back(n, m);
    for (const auto& c : m->children_) walk(joinName(n, c.first), c.second.get());
  };
  walk("", this);
  return out;
}

NamedTensors Module::stateDict() const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  visitTensors("", true, true, true, [&](const std::string& n, const Tensor& t) {
    if (seen.insert(t.implPtr()).second) out.emplace_back(n, t);
  });
  return out;
}

std::vector<Tensor> Module::checkStateDict(const std::vector<std::pair<std::string, Shape>>& keys,
                                           bool strict) const {
  // Every name (aliases included) -> target; targets grouped by identity.
  std::unordered_map<std::string, Tensor> targets;
  std::vector<std::pair<const TensorImpl*, std::string>> order;  // first name per tensor
  std::unordered_set<const TensorImpl*> seen;
  visitTensors("", true, true, true, [&](const std::string& n, const Tensor& t) {
    targets.emplace(n, t);
    if (seen.insert(t.implPtr()).second) order.emplace_back(t.implPtr(), n);
  });
  std::vector<std::string> unexpected, mismatched, duplicated;
  std::unordered_set<std::string> given;
  std::unordered_set<const TensorImpl*> covered;
  std::vector<Tensor> out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto& [name, shape] = keys[i];
    if (!given.insert(name).second) {
      duplicated.push_back(name);
      continue;
    }
    auto it = targets.find(name);
    if (it == targets.end()) {
      unexpected.push_back(name);
      continue;
    }
    covered.insert(it->second.implPtr());  // given, even if wrong: not "missing"
    if (shape != it->second.shape()) {
      mismatched.push_back(name + ": model " + shapeStr(it->second.shape()) + ", given " +
                           shapeStr(shape));
      continue;
    }
    out[i] = it->second;
  }
  std::vector<std::string> missing;
  for (const auto& [impl, name] : order)
    if (!covered.count(impl)) missing.push_back(name);

  std::string problems;
  auto add = [&](const std::vector<std::string>& names, const char* what, size_t limit) {
    if (names.empty()) return;
    problems += (problems.empty() ? "" : "; ") + std::to_string(names.size()) + " " + what + ": " +
                listNames(names, limit);
  };
  add(duplicated, "duplicate keys", 12);
  add(mismatched, "shape mismatches", 8);
  if (strict) {
    add(missing, "missing keys", 12);
    add(unexpected, "unexpected keys", 12);
  }
  LATHE_CHECK(problems.empty(), "loadStateDict (", type_name_, "): ", problems);
  return out;
}

void Module::loadStateDict(const NamedTensors& state, bool strict) {
  std::vector<std::pair<std::string, Shape>> keys;
  for (const auto& [name, src] : state) {
    LATHE_CHECK(src.defined(), "loadStateDict (", type_name_, "): tensor '", name,
                "' is undefined");
    keys.emplace_back(name, src.shape());
  }
  const std::vector<Tensor> targets = checkStateDict(keys, strict);
  NoGradGuard no_grad;
  for (size_t i = 0; i < state.size(); ++i)
    if (targets[i].defined()) Tensor(targets[i]).copy_(state[i].second);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::moveTensors(const std::function<Tensor(const Tensor&)>& convert) {
  NoGradGuard no_grad;
  std::unordered_set<const TensorImpl*> seen;
  std::vector<Tensor> all;
  visitTensors("", true, true, false, [&](const std::string&, const Tensor& t) {
    if (seen.insert(t.implPtr()).second) all.push_back(t);
  });
  for (const Tensor& t : all) {
    Tensor moved;
    {
      MemoryTagScope tag(MemoryTag::parameters);
      moved = convert(t.detach());
    }
    if (moved.sameStorage(t) && moved.dtype() == t.dtype()) continue;
    Tensor g = t.grad();
    rebindTensor(t, moved);
    if (g.defined()) {
      MemoryTagScope tag(MemoryTag::gradients);
      Tensor mg = convert(g.detach());
      // A gradient that did not need converting still aliases old memory (a flat buffer):
      // give it its own copy so it follows the parameter.
      Tensor(t).setGrad(mg.sameStorage(g) ? mg.clone() : mg);
    }
  }
}

void Module::to(Device device, DType dtype) {
  moveTensors([&](const Tensor& t) {
    Tensor r = t.to(device);
    return isFloating(r.dtype()) && isFloating(dtype) ? r.to(dtype) : r;
  });
}

void Module::to(Device device) {
  moveTensors([&](const Tensor& t) { return t.to(device); });
}

void Module::to(DType dtype) {
  moveTensors([&](const Tensor& t) {
    return isFloating(t.dtype()) && isFloating(dtype) ? t.to(dtype) : t;
  });
}

int64_t Module::numParameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& [name, p] : namedParameters())
    if (!trainable_only || p.requiresGrad()) n += p.numel();
  return n;
}

void Module::zeroGrad(bool set_to_none) {
  NoGradGuard no_grad;
  for (auto& [name, p] : namedParameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (set_to_none)
      p.zeroGrad();
    else
      g.zero_();
  }
}

void Module::setRequiresGrad(bool on) {
  for (auto& [name, p] : namedParameters()) p.setRequiresGrad(on);
}

void Module::summaryInto(std::string& out, const std::string& name, int depth) const {
  int64_t total = 0;
  std::unordered_set<const TensorImpl*> seen;
  visitTensors("", true, false, false, [&](const std::string&, const Tensor& t) {
    if (seen.insert(t.implPtr()).second) total += t.numel();
  });
  out += std::string(static_cast<size_t>(depth) * 2, ' ');
  if (!name.empty()) out += name + ": ";
  out += type_name_ + "(" + configString() + ")";
  if (total > 0) out += "  " + countString(total) + " params";
  out += "\n";
  for (const auto& c : children_) c.second->summaryInto(out, c.first, depth + 1);
}

std::string Module::summary() const {
  std::string out;
  summaryInto(out, "", 0);
  return out;
}

}  // namespace lathe
