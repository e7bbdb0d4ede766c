// Element types and devices. f64 exists for gradchecks and reference math; f16, bf16 and the two
// fp8 formats are storage types whose arithmetic happens in float. Conversions are bit-exact
// with round-to-nearest-even, usable from host and device code (no CUDA header needed).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#if defined(__CUDACC__)
#define LATHE_HD __host__ __device__
#else
#define LATHE_HD
#endif

namespace lathe {

enum class DType : uint8_t { f32, f64, f16, bf16, f8e4m3, f8e5m2, i8, u8, i32, i64, b8 };
inline constexpr int kNumDTypes = 11;

size_t dtypeSize(DType t);
const char* dtypeName(DType t);             // "f32", "bf16", ...
DType parseDType(const std::string& name);  // throws lathe::Error on an unknown name
bool isFloating(DType t);                   // f32 f64 f16 bf16 and the fp8 types
bool isLowPrecision(DType t);               // f16 bf16 fp8: arithmetic is done in f32

enum class DeviceType : uint8_t { cpu, cuda };
inline constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::cuda, i}; }
  bool isCpu() const { return type == DeviceType::cpu; }
  bool isCuda() const { return type == DeviceType::cuda; }
  std::string str() const;                    // "cpu", "cuda:0"
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:N"; throws on anything else
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// 16-bit float types with float conversions (round to nearest even; NaN preserved).
inline LATHE_HD uint32_t floatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
inline LATHE_HD float bitsFloat(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  LATHE_HD BFloat16(float f) {  // NOLINT(google-explicit-constructor)
    uint32_t u = floatBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      bits = static_cast<uint16_t>(u >> 16);
    }
  }
  LATHE_HD operator float() const { return bitsFloat(static_cast<uint32_t>(bits) << 16); }
};

struct Half {
  uint16_t bits = 0;
  Half() = default;
  LATHE_HD Half(float f) {  // NOLINT(google-explicit-constructor)
    uint32_t u = floatBits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) {
      bits = static_cast<uint16_t>(sign | 0x7e00u);
    } else if (absu >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
      bits = static_cast<uint16_t>(sign | 0x7c00u);
    } else if (absu < 0x38800000u) {  // subnormal half (or zero): scale by 2^24 and round
      float af = bitsFloat(absu);
      // af * 2^24 is the subnormal mantissa; rint via adding 0.5 with ties-to-even below.
      float m = af * 16777216.0f;
      uint32_t mi = static_cast<uint32_t>(m);
      float rem = m - static_cast<float>(mi);
      if (rem > 0.5f || (rem == 0.5f && (mi & 1u))) ++mi;
      bits = static_cast<uint16_t>(sign | mi);
    } else {
      uint32_t e = ((absu >> 23) - 112u) << 10;
      uint32_t m = (absu >> 13) & 0x3ffu;
      uint32_t r = absu & 0x1fffu;
      uint32_t h = e + m;
      if (r > 0x1000u || (r == 0x1000u && (h & 1u))) ++h;
      bits = static_cast<uint16_t>(sign | h);
    }
  }
  LATHE_HD operator float() const {
    uint32_t sign = (static_cast<uint32_t>(bits) & 0x8000u) << 16;
    uint32_t e = (bits >> 10) & 0x1fu;
    uint32_t m = bits & 0x3ffu;
    if (e == 0) {
      float f = static_cast<float>(m) * (1.0f / 16777216.0f);
      return sign ? -f : f;
    }
    if (e == 31) return bitsFloat(sign | 0x7f800000u | (m << 13));
    return bitsFloat(sign | ((e + 112u) << 23) | (m << 13));
  }
};

// fp8 (OCP 8-bit formats). E4M3: bias 7, no infinities, 0x7f/0xff NaN, max 448, saturating
// conversion. E5M2: bias 15, IEEE-like with infinities, max 57344.
float fp8e4m3ToFloat(uint8_t v);
uint8_t floatToFp8e4m3(float f);
float fp8e5m2ToFloat(uint8_t v);
uint8_t floatToFp8e5m2(float f);

struct Fp8E4M3 {
  uint8_t bits = 0;
  Fp8E4M3() = default;
  Fp8E4M3(float f) : bits(floatToFp8e4m3(f)) {}  // NOLINT(google-explicit-constructor)
  operator float() const { return fp8e4m3ToFloat(bits); }
};
struct Fp8E5M2 {
  uint8_t bits = 0;
  Fp8E5M2() = default;
  Fp8E5M2(float f) : bits(floatToFp8e5m2(f)) {}  // NOLINT(google-explicit-constructor)
  operator float() const { return fp8e5m2ToFloat(bits); }
};

// Maps a C++ type to its DType.
template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct DTypeOf<Half> {
  static constexpr DType value = DType::f16;
};
template <>
struct DTypeOf<BFloat16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct DTypeOf<Fp8E4M3> {
  static constexpr DType value = DType::f8e4m3;
};
template <>
struct DTypeOf<Fp8E5M2> {
  static constexpr DType value = DType::f8e5m2;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::i8;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct DTypeOf<bool> {
  static constexpr DType value = DType::b8;
};

// Value conversions through double (host side; exact for every supported type).
template <typename T>
inline T fromDouble(double v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0.0;
  } else if constexpr (std::is_floating_point_v<T> || std::is_integral_v<T>) {
    return static_cast<T>(v);
  } else {
    return T(static_cast<float>(v));
  }
}
template <typename T>
inline double toDouble(T v) {
  if constexpr (std::is_floating_point_v<T> || std::is_integral_v<T>) {
    return static_cast<double>(v);
  } else {
    return static_cast<double>(static_cast<float>(v));
  }
}

// The type arithmetic on T happens in: float for the 16- and 8-bit floats, T otherwise.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Half> {
  using type = float;
};
template <>
struct ComputeType<BFloat16> {
  using type = float;
};
template <>
struct ComputeType<Fp8E4M3> {
  using type = float;
};
template <>
struct ComputeType<Fp8E5M2> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

}  // namespace lathe

// Calls BODY with `scalar_t` bound to the C++ type of DTYPE. The FLOAT variant covers f32 f64
// f16 bf16; ALL adds the fp8 and integer types and bool. Unsupported types throw, naming OP.
#define LATHE_DTYPE_CASE(enumv, type, ...) \
  case ::lathe::DType::enumv: {            \
    using scalar_t = type;                 \
    __VA_ARGS__();                         \
    break;                                 \
  }

#define LATHE_DISPATCH_FLOAT(DTYPE, OP, ...)                                 \
  do {                                                                       \
    switch (DTYPE) {                                                         \
      LATHE_DTYPE_CASE(f32, float, __VA_ARGS__)                              \
      LATHE_DTYPE_CASE(f64, double, __VA_ARGS__)                             \
      LATHE_DTYPE_CASE(f16, ::lathe::Half, __VA_ARGS__)                      \
      LATHE_DTYPE_CASE(bf16, ::lathe::BFloat16, __VA_ARGS__)                 \
      default:                                                               \
        ::lathe::fail(OP, ": dtype ", ::lathe::dtypeName(DTYPE),             \
                      " is not supported (expected f32, f64, f16 or bf16)"); \
    }                                                                        \
  } while (false)

#define LATHE_DISPATCH_ALL(DTYPE, OP, ...)                                                    \
  do {                                                                                        \
    switch (DTYPE) {                                                                          \
      LATHE_DTYPE_CASE(f32, float, __VA_ARGS__)                                               \
      LATHE_DTYPE_CASE(f64, double, __VA_ARGS__)                                              \
      LATHE_DTYPE_CASE(f16, ::lathe::Half, __VA_ARGS__)                                       \
      LATHE_DTYPE_CASE(bf16, ::lathe::BFloat16, __VA_ARGS__)                                  \
      LATHE_DTYPE_CASE(f8e4m3, ::lathe::Fp8E4M3, __VA_ARGS__)                                 \
      LATHE_DTYPE_CASE(f8e5m2, ::lathe::Fp8E5M2, __VA_ARGS__)                                 \
      LATHE_DTYPE_CASE(i8, int8_t, __VA_ARGS__)                                               \
      LATHE_DTYPE_CASE(u8, uint8_t, __VA_ARGS__)                                              \
      LATHE_DTYPE_CASE(i32, int32_t, __VA_ARGS__)                                             \
      LATHE_DTYPE_CASE(i64, int64_t, __VA_ARGS__)                                             \
      LATHE_DTYPE_CASE(b8, bool, __VA_ARGS__)                                                 \
      default: ::lathe::fail(OP, ": dtype ", ::lathe::dtypeName(DTYPE), " is not supported"); \
    }                                                                                         \
  } while (false)
