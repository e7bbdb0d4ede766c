// GEMMs through cuBLASLt. Lathe's tensors are row-major; cuBLASLt is column-major, so
// C[M,N] = op(A) op(B) is computed as C^T = op(B)^T op(A)^T on the same memory. f32 uses
// f32 compute (TF32 when LATHE_ALLOW_TF32=1), f16/bf16 accumulate in f32, f64 in f64. Bias is
// fused as an epilogue. Algorithms are chosen once per shape and cached.
#include <cublasLt.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

constexpr size_t kWorkspace = 32u << 20;

struct DeviceState {
  cublasLtHandle_t handle = nullptr;
  Tensor workspace;
};

std::mutex state_mutex;
std::map<int, DeviceState>& states() {
  static std::map<int, DeviceState> s;
  return s;
}

DeviceState& stateFor(int dev) {
  std::lock_guard<std::mutex> lock(state_mutex);
  DeviceState& s = states()[dev];
  if (s.handle == nullptr) {
    setDevice(dev);
    LATHE_CUBLAS_CHECK(cublasLtCreate(&s.handle));
    MemoryTagScope tag(MemoryTag::workspace);
    s.workspace = Tensor::empty({static_cast<int64_t>(kWorkspace)}, DType::u8, Device::cuda(dev));
  }
  return s;
}

bool allowTf32() {
  static const bool on = [] {
    const char* e = std::getenv("LATHE_ALLOW_TF32");
    return e != nullptr && e[0] == '1';
  }();
  return on;
}

cudaDataType_t cudaType(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f64: return CUDA_R_64F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default:
      fail("matmul on cuda: dtype ", dtypeName(t), " is not supported (f32, f64, f16, bf16)");
  }
}

using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, bool, bool,
                       bool, int>;

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::mutex plan_mutex;
std::map<Key, Plan>& plans() {
  static std::map<Key, Plan> p;
  return p;
}

void setBatch(cublasLtMatrixLayout_t l, int64_t batch, int64_t stride) {
  if (batch <= 1) return;
  int32_t b32 = static_cast<int32_t>(batch);
  LATHE_CUBLAS_CHECK(
      cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b32, sizeof b32));
  LATHE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
      l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
}

}  // namespace

void CudaBackend::matmul(const Tensor& a, const Tensor& b, const Tensor* bias, const Tensor& out,
                         bool trans_a, bool trans_b, bool accumulate) {
  const int dev = out.device().index;
  DeviceState& st = stateFor(dev);
  setDevice(dev);
  const bool batched = out.dim() == 3;
  const int64_t batch = batched ? out.size(0) : 1;
  const int64_t M = out.size(-2), N = out.size(-1);
  const int64_t K = trans_a ? a.size(-2) : a.size(-1);
  const int64_t a_stride = a.dim() == 3 ? a.size(-2) * a.size(-1) : 0;
  const int64_t b_stride = b.dim() == 3 ? b.size(-2) * b.size(-1) : 0;
  const cudaDataType_t dt = cudaType(out.dtype());
  const bool f64 = out.dtype() == DType::f64;

  const Key key{dev,
                batch,
                M,
                N,
                K,
                a_stride,
                b_stride,
                static_cast<int>(out.dtype()),
                trans_a,
                trans_b,
                bias != nullptr,
                allowTf32() ? 1 : 0};
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(plan_mutex);
    auto it = plans().find(key);
    if (it != plans().end()) plan = it->second;
  }
  if (plan.op == nullptr) {
    const cublasComputeType_t compute =
        f64 ? CUBLAS_COMPUTE_64F
            : (out.dtype() == DType::f32 && allowTf32() ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                        : CUBLAS_COMPUTE_32F);
    LATHE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.op, compute, f64 ? CUDA_R_64F : CUDA_R_32F));
    // Column-major roles: "A" is our b, "B" is our a, the result is out^T.
    const cublasOperation_t op_lt_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_lt_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                      &op_lt_a, sizeof op_lt_a));
    LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                      &op_lt_b, sizeof op_lt_b));
    if (bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      LATHE_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
      const cudaDataType_t bias_t = dt;
      LATHE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          plan.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_t, sizeof bias_t));
    }
    // Stored shapes (column-major rows, cols, ld) of our row-major buffers.
    const uint64_t lt_a_rows = trans_b ? K : N, lt_a_cols = trans_b ? N : K;
    const uint64_t lt_b_rows = trans_a ? M : K, lt_b_cols = trans_a ? K : M;
    LATHE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, dt, lt_a_rows, lt_a_cols,
                                                  static_cast<int64_t>(lt_a_rows)));
    LATHE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, dt, lt_b_rows, lt_b_cols,
                                                  static_cast<int64_t>(lt_b_rows)));
    LATHE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.c, dt, static_cast<uint64_t>(N),
                                                  static_cast<uint64_t>(M), N));
    if (batched) {
      setBatch(plan.a, batch, b_stride);
      setBatch(plan.b, batch, a_stride);
      setBatch(plan.c, batch, M * N);
    }
    cublasLtMatmulPreference_t pref = nullptr;
    LATHE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = kWorkspace;
    LATHE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    LATHE_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(st.handle, plan.op, plan.a, plan.b, plan.c,
                                                      plan.c, pref, 1, &result, &found));
    cublasLtMatmulPreferenceDestroy(pref);
    LATHE_CHECK(found > 0, "cuBLASLt found no algorithm for matmul [", M, "x", K, "] x [", K, "x",
                N, "] batch ", batch, " dtype ", dtypeName(out.dtype()));
    plan.algo = result.algo;
    std::lock_guard<std::mutex> lock(plan_mutex);
    plans()[key] = plan;
  }
  if (bias) {
    const void* bp = bias->rawData();
    LATHE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp));
  }
  const double alpha64 = 1.0, beta64 = accumulate ? 1.0 : 0.0;
  const float alpha32 = 1.0f, beta32 = accumulate ? 1.0f : 0.0f;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : static_cast<const void*>(&alpha32);
  const void* beta = f64 ? static_cast<const void*>(&beta64) : static_cast<const void*>(&beta32);
  LATHE_CUBLAS_CHECK(cublasLtMatmul(st.handle, plan.op, alpha, b.rawData(), plan.a, a.rawData(),
                                    plan.b, beta, out.rawData(), plan.c, out.rawData(), plan.c,
                                    &plan.algo, st.workspace.rawData(), kWorkspace,
                                    streamFor(dev)));
}

}  // namespace lathe::cuda
