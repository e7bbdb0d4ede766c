// Shared CUDA helpers: error checks that become lathe::Error, the device types behind each
// DType, dtype dispatch for kernels, launch geometry. Included by kernels/cuda/*.cu only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "core/base/Error.h"
#include "core/tensor/Tensor.h"

#define LATHE_CUDA_CHECK(expr)                                                                     \
  do {                                                                                             \
    cudaError_t lathe_err_ = (expr);                                                               \
    if (lathe_err_ != cudaSuccess) {                                                               \
      cudaGetLastError();                                                                          \
      ::lathe::fail("CUDA error in ", #expr, ": ", cudaGetErrorString(lathe_err_), " (", __FILE__, \
                    ":", __LINE__, ")");                                                           \
    }                                                                                              \
  } while (false)

// Checks the last kernel launch.
#define LATHE_CUDA_LAUNCH_CHECK() LATHE_CUDA_CHECK(cudaGetLastError())

// Checks a cuBLAS / cuBLASLt call (in files that include cublasLt.h).
#define LATHE_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                      \
    cublasStatus_t lathe_st_ = (expr);                                                      \
    if (lathe_st_ != CUBLAS_STATUS_SUCCESS)                                                 \
      ::lathe::fail("cuBLASLt error in ", #expr, ": status ", static_cast<int>(lathe_st_)); \
  } while (false)

namespace lathe::cuda {

// The stream all Lathe work on a device is ordered on (created once per device).
cudaStream_t streamFor(int device);
// Makes `device` current for this thread (cheap when already current).
void setDevice(int device);
// Blocks and threads for n elements at `threads` per block (grid capped; kernels grid-stride).
inline unsigned blocksFor(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

// Streaming multiprocessors of `device` (queried once per device).
inline int smCount(int device) {
  static std::atomic<int> cache[64];
  std::atomic<int>* slot = device >= 0 && device < 64 ? &cache[device] : nullptr;
  if (slot) {
    const int known = slot->load(std::memory_order_relaxed);
    if (known > 0) return known;
  }
  int n = 0;
  LATHE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  if (n < 1) n = 1;
  if (slot) slot->store(n, std::memory_order_relaxed);
  return n;
}

// Blocks of `threads` that fit on one SM at once for kKernel (queried once per kernel; the
// devices of one process are assumed to be of one architecture).
template <auto kKernel>
int residentBlocksPerSm(int threads) {
  static const int blocks = [threads] {
    int b = 0;
    LATHE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kKernel, threads, 0));
    return b < 1 ? 1 : b;
  }();
  return blocks;
}

// A grid of at most one full wave of kKernel on `device` (grid-stride kernels), at least 1.
template <auto kKernel>
unsigned residentGrid(int device, int threads, int64_t wanted_blocks) {
  const int64_t wave =
      static_cast<int64_t>(smCount(device)) * residentBlocksPerSm<kKernel>(threads);
  const int64_t b = wanted_blocks < wave ? wanted_blocks : wave;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

// kN elements of T moved as one aligned access (16 bytes when kN = kVecWidth<T>).
template <typename T, int kN>
struct alignas(sizeof(T) * kN) Pack {
  T v[kN];
};
// Elements of T in one 16-byte access.
template <typename T>
inline constexpr int kVecWidth = sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));

// Whether p is a multiple of `bytes` (a power of two).
inline bool isAligned(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

// Arithmetic type for a storage type: float for the 16/8-bit floats.
template <typename T>
struct Acc {
  using type = T;
};
template <>
struct Acc<__half> {
  using type = float;
};
template <>
struct Acc<__nv_bfloat16> {
  using type = float;
};
template <>
struct Acc<__nv_fp8_e4m3> {
  using type = float;
};
template <>
struct Acc<__nv_fp8_e5m2> {
  using type = float;
};
template <>
struct Acc<bool> {
  using type = float;
};
template <typename T>
using acc_t = typename Acc<T>::type;

template <typename T>
__device__ __forceinline__ acc_t<T> load(const T& v) {
  return static_cast<acc_t<T>>(v);
}
template <>
__device__ __forceinline__ float load<__half>(const __half& v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16& v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float load<__nv_fp8_e4m3>(const __nv_fp8_e4m3& v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float load<__nv_fp8_e5m2>(const __nv_fp8_e5m2& v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float load<bool>(const bool& v) {
  return v ? 1.0f : 0.0f;
}

template <typename T, typename V>
__device__ __forceinline__ T store(V v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half store<__half, float>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half store<__half, double>(double v) {
  return __double2half(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16, double>(double v) {
  return __double2bfloat16(v);
}
template <>
__device__ __forceinline__ __nv_fp8_e4m3 store<__nv_fp8_e4m3, float>(float v) {
  return __nv_fp8_e4m3(v);
}
template <>
__device__ __forceinline__ __nv_fp8_e5m2 store<__nv_fp8_e5m2, float>(float v) {
  return __nv_fp8_e5m2(v);
}
template <>
__device__ __forceinline__ __nv_fp8_e4m3 store<__nv_fp8_e4m3, double>(double v) {
  return __nv_fp8_e4m3(static_cast<float>(v));
}
template <>
__device__ __forceinline__ __nv_fp8_e5m2 store<__nv_fp8_e5m2, double>(double v) {
  return __nv_fp8_e5m2(static_cast<float>(v));
}
template <>
__device__ __forceinline__ bool store<bool, float>(float v) {
  return v != 0.0f;
}
template <>
__device__ __forceinline__ bool store<bool, double>(double v) {
  return v != 0.0;
}

// Up to kMaxDims dims of sizes and per-operand strides, passed to kernels by value.
inline constexpr int kMaxDims = 8;
template <int N>
struct StridedArgs {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t stride[N][kMaxDims];
};

// Coalesces dims (as the CPU reference does) and packs them for a kernel. Throws past kMaxDims.
template <int N>
StridedArgs<N> packStrided(const Shape& shape, const Shape* const (&strides)[N]) {
  StridedArgs<N> a;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (a.ndim > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (a.stride[k][a.ndim - 1] != (*strides[k])[d] * shape[d]) merge = false;
      if (merge) {
        a.size[a.ndim - 1] *= shape[d];
        for (int k = 0; k < N; ++k) a.stride[k][a.ndim - 1] = (*strides[k])[d];
        continue;
      }
    }
    LATHE_CHECK(a.ndim < kMaxDims, "CUDA kernels take at most ", kMaxDims,
                " non-mergeable dims; got shape ", shapeStr(shape));
    a.size[a.ndim] = shape[d];
    for (int k = 0; k < N; ++k) a.stride[k][a.ndim] = (*strides[k])[d];
    ++a.ndim;
  }
  return a;
}

// Offsets of element `i` (row-major over a.size) for each operand.
template <int N>
__device__ __forceinline__ void stridedOffsets(const StridedArgs<N>& a, int64_t i,
                                               int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = a.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % a.size[d];
    i /= a.size[d];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += idx * a.stride[k][d];
  }
}

}  // namespace lathe::cuda

// Dispatch over the device storage types. FLOAT: f32 f64 f16 bf16. ALL adds fp8, ints, bool.
#define LATHE_CUDA_CASE(enumv, type, ...) \
  case ::lathe::DType::enumv: {           \
    using scalar_t = type;                \
    __VA_ARGS__();                        \
    break;                                \
  }
#define LATHE_CUDA_DISPATCH_FLOAT(DTYPE, OP, ...)                            \
  do {                                                                       \
    switch (DTYPE) {                                                         \
      LATHE_CUDA_CASE(f32, float, __VA_ARGS__)                               \
      LATHE_CUDA_CASE(f64, double, __VA_ARGS__)                              \
      LATHE_CUDA_CASE(f16, __half, __VA_ARGS__)                              \
      LATHE_CUDA_CASE(bf16, __nv_bfloat16, __VA_ARGS__)                      \
      default:                                                               \
        ::lathe::fail(OP, " on cuda: dtype ", ::lathe::dtypeName(DTYPE),     \
                      " is not supported (expected f32, f64, f16 or bf16)"); \
    }                                                                        \
  } while (false)
#define LATHE_CUDA_DISPATCH_ALL(DTYPE, OP, ...)                                                \
  do {                                                                                         \
    switch (DTYPE) {                                                                           \
      LATHE_CUDA_CASE(f32, float, __VA_ARGS__)                                                 \
      LATHE_CUDA_CASE(f64, double, __VA_ARGS__)                                                \
      LATHE_CUDA_CASE(f16, __half, __VA_ARGS__)                                                \
      LATHE_CUDA_CASE(bf16, __nv_bfloat16, __VA_ARGS__)                                        \
      LATHE_CUDA_CASE(f8e4m3, __nv_fp8_e4m3, __VA_ARGS__)                                      \
      LATHE_CUDA_CASE(f8e5m2, __nv_fp8_e5m2, __VA_ARGS__)                                      \
      LATHE_CUDA_CASE(i8, int8_t, __VA_ARGS__)                                                 \
      LATHE_CUDA_CASE(u8, uint8_t, __VA_ARGS__)                                                \
      LATHE_CUDA_CASE(i32, int32_t, __VA_ARGS__)                                               \
      LATHE_CUDA_CASE(i64, int64_t, __VA_ARGS__)                                               \
      LATHE_CUDA_CASE(b8, bool, __VA_ARGS__)                                                   \
      default:                                                                                 \
        ::lathe::fail(OP, " on cuda: dtype ", ::lathe::dtypeName(DTYPE), " is not supported"); \
    }                                                                                          \
  } while (false)
