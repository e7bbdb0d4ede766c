// fp8 on Hopper: the delayed-scaling factor from an amax history (one warp), quantization with
// its amax and an optional transposed copy (32x32 tiles through shared memory, so both writes
// are coalesced), and the scaled GEMM through cuBLASLt. cuBLASLt's fp8 kernels take only the
// "TN" layout (both operands K-major in column-major terms), which is why the op layer keeps
// transposed fp8 copies for the backward GEMMs instead of asking for transposes here.
#include <cublasLt.h>
#include <cuda_fp8.h>

#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

__global__ void fp8ScaleKernel(const float* history, int64_t h, float fp8_max_over_margin,
                               float* scale, float* scale_inv) {
  float amax = 0.0f;
  for (int64_t i = threadIdx.x; i < h; i += 32) {
    const float a = history[i];
    if (isfinite(a) && a > amax) amax = a;
  }
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  if (threadIdx.x == 0) {
    float s = 1.0f;
    if (amax > 0.0f) {
      s = fp8_max_over_margin / amax;
      if (!isfinite(s)) s = 1.0f;
    }
    scale[0] = s;
    scale_inv[0] = 1.0f / s;
  }
}

template <typename Q>
__device__ __forceinline__ uint8_t toFp8(float v);
template <>
__device__ __forceinline__ uint8_t toFp8<__nv_fp8_e4m3>(float v) {
  return __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
}
template <>
__device__ __forceinline__ uint8_t toFp8<__nv_fp8_e5m2>(float v) {
  return __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E5M2);
}

// Block (32, 8) over a 32x32 tile of x [R, C]. amax is the max over |x| as int bits: for
// non-negative floats the int order is the float order, and a NaN (bits above +inf) wins.
template <typename T, typename Q>
__global__ void quantizeKernel(const T* x, int64_t R, int64_t C, const float* scale, uint8_t* q,
                               uint8_t* q_t, int* amax_bits) {
  __shared__ uint8_t tile[32][33];
  const float s = scale[0];
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * 32,
                c0 = static_cast<int64_t>(blockIdx.x) * 32;
  int m = 0;
  for (int k = threadIdx.y; k < 32; k += 8) {
    const int64_t r = r0 + k, c = c0 + threadIdx.x;
    if (r < R && c < C) {
      const float v = load(x[r * C + c]);
      m = max(m, __float_as_int(fabsf(v)));
      const uint8_t b = toFp8<Q>(v * s);
      if (q) q[r * C + c] = b;
      tile[k][threadIdx.x] = b;
    }
  }
  if (q_t) {
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += 8) {
      const int64_t c = c0 + k, r = r0 + threadIdx.x;
      if (r < R && c < C) q_t[c * R + r] = tile[threadIdx.x][k];
    }
  }
  for (int off = 16; off > 0; off /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
  if (threadIdx.x == 0) atomicMax(amax_bits, m);
}

cudaDataType_t fp8Type(DType t) {
  switch (t) {
    case DType::f8e4m3: return CUDA_R_8F_E4M3;
    case DType::f8e5m2: return CUDA_R_8F_E5M2;
    default: fail("matmulFp8: operands must be f8e4m3 or f8e5m2, got ", dtypeName(t));
  }
}

constexpr size_t kWorkspace = 32u << 20;

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};
using Key = std::tuple<int, int64_t, int64_t, int64_t, int, int, int, bool>;

struct State {
  std::mutex mutex;
  std::map<int, cublasLtHandle_t> handles;
  std::map<int, Tensor> workspaces;
  std::map<Key, Plan> plans;
};
State& state() {
  static State s;
  return s;
}

}  // namespace

void CudaBackend::fp8Scale(const Tensor& amax_history, double fp8_max, int margin,
                           const Tensor& scale, const Tensor& scale_inv) {
  const int dev = scale.device().index;
  setDevice(dev);
  fp8ScaleKernel<<<1, 32, 0, streamFor(dev)>>>(
      static_cast<const float*>(amax_history.rawData()), amax_history.numel(),
      static_cast<float>(fp8_max / std::ldexp(1.0, margin)), static_cast<float*>(scale.rawData()),
      static_cast<float*>(scale_inv.rawData()));
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::quantizeFp8(const Tensor& x, const Tensor& scale, const Tensor& q,
                              const Tensor& q_t, const Tensor& amax) {
  const int dev = x.device().index;
  setDevice(dev);
  LATHE_CHECK(x.dim() == 2, "quantizeFp8: x must be 2-D, got ", shapeStr(x.shape()));
  // Neither q nor q_t: only the amax is wanted (a tensor's first use measures it).
  const DType fmt = q.defined() ? q.dtype() : q_t.defined() ? q_t.dtype() : DType::f8e4m3;
  LATHE_CHECK(!q.defined() || !q_t.defined() || q.dtype() == q_t.dtype(),
              "quantizeFp8: q and q_t must share one fp8 dtype");
  const int64_t R = x.size(0), C = x.size(1);
  LATHE_CUDA_CHECK(cudaMemsetAsync(amax.rawData(), 0, sizeof(float), streamFor(dev)));
  if (R == 0 || C == 0) return;
  const dim3 grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>((R + 31) / 32));
  const dim3 block(32, 8);
  uint8_t* pq = q.defined() ? static_cast<uint8_t*>(q.rawData()) : nullptr;
  uint8_t* pt = q_t.defined() ? static_cast<uint8_t*>(q_t.rawData()) : nullptr;
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "quantizeFp8", [&] {
    using T = scalar_t;
    const T* px = static_cast<const T*>(x.rawData());
    const float* ps = static_cast<const float*>(scale.rawData());
    int* pa = static_cast<int*>(amax.rawData());
    if (fmt == DType::f8e4m3)
      quantizeKernel<T, __nv_fp8_e4m3>
          <<<grid, block, 0, streamFor(dev)>>>(px, R, C, ps, pq, pt, pa);
    else if (fmt == DType::f8e5m2)
      quantizeKernel<T, __nv_fp8_e5m2>
          <<<grid, block, 0, streamFor(dev)>>>(px, R, C, ps, pq, pt, pa);
    else
      fail("quantizeFp8: q must be f8e4m3 or f8e5m2, got ", dtypeName(fmt));
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::matmulFp8(const Tensor& a, const Tensor& b, const Tensor& a_scale_inv,
                            const Tensor& b_scale_inv, const Tensor* bias, const Tensor& out) {
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t M = a.size(0), K = a.size(1), N = b.size(0);
  LATHE_CHECK(out.dtype() == DType::bf16 || out.dtype() == DType::f32,
              "matmulFp8 on cuda: the output must be bf16 or f32, got ", dtypeName(out.dtype()));
  LATHE_CHECK(bias == nullptr || out.dtype() == DType::bf16,
              "matmulFp8 on cuda: a fused bias needs a bf16 output");
  LATHE_CHECK(!(a.dtype() == DType::f8e5m2 && b.dtype() == DType::f8e5m2),
              "matmulFp8: e5m2 x e5m2 has no fp8 tensor-core kernel");
  LATHE_CHECK(M % 16 == 0 && N % 16 == 0 && K % 16 == 0, "matmulFp8 on cuda: M, N, K (", M, ", ", N,
              ", ", K, ") must be multiples of 16");
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mutex);
  cublasLtHandle_t& handle = st.handles[dev];
  if (handle == nullptr) {
    LATHE_CUBLAS_CHECK(cublasLtCreate(&handle));
    MemoryTagScope tag(MemoryTag::workspace);
    st.workspaces[dev] =
        Tensor::empty({static_cast<int64_t>(kWorkspace)}, DType::u8, Device::cuda(dev));
  }
  const cudaDataType_t out_t = out.dtype() == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const Key key{dev,
                M,
                N,
                K,
                static_cast<int>(a.dtype()),
                static_cast<int>(b.dtype()),
                static_cast<int>(out.dtype()),
                bias != nullptr};
  Plan& plan = st.plans[key];
  if (plan.op == nullptr) {
    LATHE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    // Column-major: out^T [N, M] = b [K, N]^T (op T) x a [K, M] (op N): the TN layout.
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    LATHE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
    LATHE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
    if (bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      LATHE_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
      const cudaDataType_t bias_t = CUDA_R_16BF;
      LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          plan.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_t, sizeof bias_t));
    }
    LATHE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(
        &plan.a, fp8Type(b.dtype()), static_cast<uint64_t>(K), static_cast<uint64_t>(N), K));
    LATHE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(
        &plan.b, fp8Type(a.dtype()), static_cast<uint64_t>(K), static_cast<uint64_t>(M), K));
    LATHE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.c, out_t, static_cast<uint64_t>(N),
                                                  static_cast<uint64_t>(M), N));
    cublasLtMatmulPreference_t pref = nullptr;
    LATHE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = kWorkspace;
    LATHE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    // The scale pointers are part of the problem cuBLASLt plans for; any device pointer will do.
    const void* sp = a_scale_inv.rawData();
    LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                      &sp, sizeof sp));
    LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                      &sp, sizeof sp));
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(
        handle, plan.op, plan.a, plan.b, plan.c, plan.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
      st.plans.erase(key);
      fail("cuBLASLt has no fp8 GEMM for [", M, "x", K, "] x [", N, "x", K, "]^T (",
           dtypeName(a.dtype()), " x ", dtypeName(b.dtype()), " -> ", dtypeName(out.dtype()),
           "; status ", static_cast<int>(hs), "): fp8 needs an sm_89 or newer GPU");
    }
    plan.algo = result.algo;
  }
  // cuBLASLt's "A" is our b and its "B" our a.
  const void* a_sp = b_scale_inv.rawData();
  const void* b_sp = a_scale_inv.rawData();
  LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                    &a_sp, sizeof a_sp));
  LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                    &b_sp, sizeof b_sp));
  if (bias) {
    const void* bp = bias->rawData();
    LATHE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp));
  }
  const float alpha = 1.0f, beta = 0.0f;
  LATHE_CUBLAS_CHECK(cublasLtMatmul(handle, plan.op, &alpha, b.rawData(), plan.a, a.rawData(),
                                    plan.b, &beta, out.rawData(), plan.c, out.rawData(), plan.c,
                                    &plan.algo, st.workspaces[dev].rawData(), kWorkspace,
                                    streamFor(dev)));
}

}  // namespace lathe::cuda
