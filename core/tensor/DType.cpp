#include "core/tensor/DType.h"

#include <cmath>

#include "core/base/Error.h"

namespace lathe {
namespace {

struct DTypeInfo {
  const char* name;
  size_t size;
  bool floating;
};

constexpr DTypeInfo kInfo[kNumDTypes] = {
    {"f32", 4, true},    {"f64", 8, true},    {"f16", 2, true},   {"bf16", 2, true},
    {"f8e4m3", 1, true}, {"f8e5m2", 1, true}, {"i8", 1, false},   {"u8", 1, false},
    {"i32", 4, false},   {"i64", 8, false},   {"bool", 1, false},
};

// Generic encoder for the small float formats: MBITS mantissa bits, exponent bias BIAS, largest
// finite MAXV. Rounds to nearest even; out-of-range finite values saturate to MAXV.
uint8_t encodeSmallFloat(float f, int mbits, int bias, float maxv, bool has_inf) {
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  if (std::isnan(f)) return 0x7f;
  float a = std::fabs(f);
  if (std::isinf(a) && has_inf) return sign | 0x7c;
  if (a == 0.0f) return sign;
  int e = 0;
  std::frexp(a, &e);
  int E = e - 1;  // a = 1.x * 2^E
  if (E < 1 - bias) E = 1 - bias;
  double quantum = std::ldexp(1.0, E - mbits);
  double q = std::nearbyint(static_cast<double>(a) / quantum);
  if (q >= std::ldexp(1.0, mbits + 1)) {
    q /= 2;
    ++E;
  }
  if (q * quantum > maxv || std::isinf(a))
    return sign | encodeSmallFloat(maxv, mbits, bias, maxv, has_inf);
  int exp_field = 0;
  int mant = static_cast<int>(q);
  if (mant >= (1 << mbits)) {
    exp_field = E + bias;
    mant -= 1 << mbits;
  }
  return sign | static_cast<uint8_t>((exp_field << mbits) | mant);
}

float decodeSmallFloat(uint8_t v, int mbits, int bias) {
  const int ebits = 7 - mbits;
  const int exp_field = (v >> mbits) & ((1 << ebits) - 1);
  const int mant = v & ((1 << mbits) - 1);
  float mag;
  if (exp_field == 0) {
    mag = std::ldexp(static_cast<float>(mant), 1 - bias - mbits);
  } else {
    mag = std::ldexp(1.0f + static_cast<float>(mant) / static_cast<float>(1 << mbits),
                     exp_field - bias);
  }
  return (v & 0x80) ? -mag : mag;
}

}  // namespace

size_t dtypeSize(DType t) {
  return kInfo[static_cast<int>(t)].size;
}
const char* dtypeName(DType t) {
  return kInfo[static_cast<int>(t)].name;
}
bool isFloating(DType t) {
  return kInfo[static_cast<int>(t)].floating;
}
bool isLowPrecision(DType t) {
  return t == DType::f16 || t == DType::bf16 || t == DType::f8e4m3 || t == DType::f8e5m2;
}

DType parseDType(const std::string& name) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (name == kInfo[i].name) return static_cast<DType>(i);
  if (name == "float32" || name == "float") return DType::f32;
  if (name == "float64" || name == "double") return DType::f64;
  if (name == "float16" || name == "half") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  fail("unknown dtype \"", name,
       "\" (expected one of f32, f64, f16, bf16, f8e4m3, f8e5m2, i8, u8, ", "i32, i64, bool)");
}

std::string Device::str() const {
  return type == DeviceType::cpu ? std::string("cpu") : "cuda:" + std::to_string(index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    int idx = 0;
    for (size_t i = 5; i < s.size(); ++i) {
      LATHE_CHECK(s[i] >= '0' && s[i] <= '9' && idx < 1000, "device \"", s,
                  "\": expected cpu or cuda:N with N a GPU index");
      idx = idx * 10 + (s[i] - '0');
    }
    return cuda(idx);
  }
  fail("device \"", s, "\": expected cpu or cuda:N with N a GPU index");
}

float fp8e4m3ToFloat(uint8_t v) {
  if ((v & 0x7f) == 0x7f) return NAN;
  return decodeSmallFloat(v, 3, 7);
}
uint8_t floatToFp8e4m3(float f) {
  return encodeSmallFloat(f, 3, 7, 448.0f, false);
}
float fp8e5m2ToFloat(uint8_t v) {
  if ((v & 0x7c) == 0x7c) {
    if ((v & 0x03) == 0) return (v & 0x80) ? -INFINITY : INFINITY;
    return NAN;
  }
  return decodeSmallFloat(v, 2, 15);
}
uint8_t floatToFp8e5m2(float f) {
  return encodeSmallFloat(f, 2, 15, 57344.0f, true);
}

}  // namespace lathe
