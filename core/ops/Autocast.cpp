#include "core/ops/Autocast.h"

#include "core/base/Error.h"

namespace lathe {
namespace {

thread_local std::optional<DType> t_autocast;

bool isHalf(DType t) {
  return t == DType::bf16 || t == DType::f16;
}

}  // namespace

AutocastGuard::AutocastGuard(DType dtype) : previous_(t_autocast) {
  LATHE_CHECK(dtype == DType::bf16 || dtype == DType::f16 || dtype == DType::f32,
              "AutocastGuard: dtype ", dtypeName(dtype), " is not supported; expected bf16, f16 ",
              "(mixed precision) or f32 (off)");
  t_autocast = dtype == DType::f32 ? std::nullopt : std::optional<DType>(dtype);
}

AutocastGuard::~AutocastGuard() {
  t_autocast = previous_;
}

std::optional<DType> autocastDType() {
  return t_autocast;
}

namespace autocast {

Tensor low(const Tensor& t) {
  if (!t_autocast || !t.defined() || t.dtype() != DType::f32) return t;
  return t.to(*t_autocast);
}

bool wantsLow(const Tensor& a, const Tensor& b, const Tensor& c) {
  if (!t_autocast) return false;
  for (const Tensor* t : {&a, &b, &c})
    if (t->defined() && t->dtype() == DType::f32) return true;
  return false;
}

Tensor f32(const Tensor& t) {
  if (!t_autocast || !t.defined() || !isHalf(t.dtype())) return t;
  return t.to(DType::f32);
}

bool wantsF32(const Tensor& a, const Tensor& b) {
  if (!t_autocast) return false;
  return (a.defined() && isHalf(a.dtype())) || (b.defined() && isHalf(b.dtype()));
}

std::optional<std::pair<Tensor, Tensor>> promote(const Tensor& a, const Tensor& b) {
  if (!t_autocast || !a.defined() || !b.defined() || a.dtype() == b.dtype()) return std::nullopt;
  const bool mixed = (a.dtype() == DType::f32 && isHalf(b.dtype())) ||
                     (b.dtype() == DType::f32 && isHalf(a.dtype()));
  if (!mixed) return std::nullopt;
  return std::make_pair(a.to(DType::f32), b.to(DType::f32));
}

}  // namespace autocast
}  // namespace lathe
