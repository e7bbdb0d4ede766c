// Convolution through cuDNN (NCHW, groups, dilation; algorithms chosen once per shape by
// cuDNN's heuristics and cached; workspace from Lathe's caching allocator, tagged workspace)
// and 2-D pooling with own kernels (max pooling records i64 indices for its backward, as the
// CPU does, so the backward needs neither x nor y).
#include <cudnn.h>

#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

#define LATHE_CUDNN_CHECK(expr)                                                      \
  do {                                                                               \
    cudnnStatus_t lathe_st_ = (expr);                                                \
    if (lathe_st_ != CUDNN_STATUS_SUCCESS)                                           \
      ::lathe::fail("cuDNN error in ", #expr, ": ", cudnnGetErrorString(lathe_st_)); \
  } while (false)

std::mutex handle_mutex;
cudnnHandle_t handleFor(int dev) {
  static std::map<int, cudnnHandle_t> handles;
  std::lock_guard<std::mutex> lock(handle_mutex);
  auto& h = handles[dev];
  if (h == nullptr) {
    setDevice(dev);
    LATHE_CUDNN_CHECK(cudnnCreate(&h));
    LATHE_CUDNN_CHECK(cudnnSetStream(h, streamFor(dev)));
  }
  return h;
}

cudnnDataType_t dnnType(DType t) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default:
      fail("conv2d on cuda: dtype ", dtypeName(t), " is not supported (f32, f64, f16, bf16)");
  }
}

// Descriptors for one convolution shape; created once and cached with the chosen algorithms.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  size_t ws_fwd = 0, ws_data = 0, ws_filter = 0;
};

using ConvKey = std::tuple<int, int, Shape, Shape, int, int, int, int, int, int, int>;
std::mutex plan_mutex;
std::map<ConvKey, ConvPlan>& plans() {
  static std::map<ConvKey, ConvPlan> p;
  return p;
}

ConvPlan& planFor(int dev, const Tensor& x, const Tensor& w, const Tensor& y,
                  const Conv2dParams& p) {
  const ConvKey key{dev,          static_cast<int>(x.dtype()),
                    x.shape(),    w.shape(),
                    p.stride_h,   p.stride_w,
                    p.pad_h,      p.pad_w,
                    p.dilation_h, p.dilation_w,
                    p.groups};
  std::lock_guard<std::mutex> lock(plan_mutex);
  auto it = plans().find(key);
  if (it != plans().end()) return it->second;
  cudnnHandle_t h = handleFor(dev);
  ConvPlan plan;
  const cudnnDataType_t dt = dnnType(x.dtype());
  auto dim = [](const Tensor& t, int i) {
    return static_cast<int>(t.shape()[static_cast<size_t>(i)]);
  };
  LATHE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan.x));
  LATHE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan.x, CUDNN_TENSOR_NCHW, dt, dim(x, 0), dim(x, 1),
                                               dim(x, 2), dim(x, 3)));
  LATHE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan.y));
  LATHE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan.y, CUDNN_TENSOR_NCHW, dt, dim(y, 0), dim(y, 1),
                                               dim(y, 2), dim(y, 3)));
  LATHE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan.bias));
  LATHE_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(plan.bias, CUDNN_TENSOR_NCHW, dt, 1, dim(y, 1), 1, 1));
  LATHE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan.w));
  LATHE_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan.w, dt, CUDNN_TENSOR_NCHW, dim(w, 0), dim(w, 1),
                                               dim(w, 2), dim(w, 3)));
  LATHE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan.conv));
  const cudnnDataType_t compute = x.dtype() == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  LATHE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan.conv, p.pad_h, p.pad_w, p.stride_h,
                                                    p.stride_w, p.dilation_h, p.dilation_w,
                                                    CUDNN_CROSS_CORRELATION, compute));
  LATHE_CUDNN_CHECK(cudnnSetConvolutionGroupCount(plan.conv, p.groups));
  const bool low = x.dtype() == DType::f16 || x.dtype() == DType::bf16;
  LATHE_CUDNN_CHECK(
      cudnnSetConvolutionMathType(plan.conv, low ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));

  constexpr int kMax = 8;
  int found = 0;
  cudnnConvolutionFwdAlgoPerf_t fwd[kMax];
  LATHE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, plan.x, plan.w, plan.conv, plan.y,
                                                           kMax, &found, fwd));
  LATHE_CHECK(found > 0 && fwd[0].status == CUDNN_STATUS_SUCCESS,
              "cuDNN has no forward algorithm for conv2d x ", shapeStr(x.shape()), " w ",
              shapeStr(w.shape()));
  plan.fwd = fwd[0].algo;
  LATHE_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, plan.x, plan.w, plan.conv, plan.y,
                                                            plan.fwd, &plan.ws_fwd));
  cudnnConvolutionBwdDataAlgoPerf_t bd[kMax];
  LATHE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, plan.w, plan.y, plan.conv,
                                                                plan.x, kMax, &found, bd));
  LATHE_CHECK(found > 0 && bd[0].status == CUDNN_STATUS_SUCCESS,
              "cuDNN has no backward-data algorithm for conv2d");
  plan.bwd_data = bd[0].algo;
  LATHE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
      h, plan.w, plan.y, plan.conv, plan.x, plan.bwd_data, &plan.ws_data));
  cudnnConvolutionBwdFilterAlgoPerf_t bf[kMax];
  LATHE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, plan.x, plan.y, plan.conv,
                                                                  plan.w, kMax, &found, bf));
  LATHE_CHECK(found > 0 && bf[0].status == CUDNN_STATUS_SUCCESS,
              "cuDNN has no backward-filter algorithm for conv2d");
  plan.bwd_filter = bf[0].algo;
  LATHE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
      h, plan.x, plan.y, plan.conv, plan.w, plan.bwd_filter, &plan.ws_filter));
  return plans().emplace(key, plan).first->second;
}

Tensor workspace(int dev, size_t bytes) {
  MemoryTagScope tag(MemoryTag::workspace);
  return Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, Device::cuda(dev));
}

struct Scalars {
  double d1 = 1.0, d0 = 0.0;
  float f1 = 1.0f, f0 = 0.0f;
  bool f64;
  explicit Scalars(DType t) : f64(t == DType::f64) {}
  const void* one() const {
    return f64 ? static_cast<const void*>(&d1) : static_cast<const void*>(&f1);
  }
  const void* zero() const {
    return f64 ? static_cast<const void*>(&d0) : static_cast<const void*>(&f0);
  }
};

template <typename T>
__global__ void poolKernel(const T* x, T* y, int64_t* indices, int64_t NC, int H, int W, int OH,
                           int OW, Pool2dParams p) {
  using A = acc_t<T>;
  const int64_t total = NC * OH * OW;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int ow = static_cast<int>(e % OW), oh = static_cast<int>((e / OW) % OH);
    const int64_t nc = e / (static_cast<int64_t>(OW) * OH);
    const T* plane = x + nc * H * W;
    A best = -INFINITY, acc = 0;
    int64_t best_i = -1;
    int count = 0;
    for (int kh = 0; kh < p.kernel_h; ++kh) {
      const int ih = oh * p.stride_h - p.pad_h + kh;
      if (ih < 0 || ih >= H) continue;
      for (int kw = 0; kw < p.kernel_w; ++kw) {
        const int iw = ow * p.stride_w - p.pad_w + kw;
        if (iw < 0 || iw >= W) continue;
        const A v = static_cast<A>(load(plane[ih * W + iw]));
        if (p.max) {
          if (best_i < 0 || v > best || v != v) {
            best = v;
            best_i = ih * W + iw;
          }
        } else {
          acc += v;
          ++count;
        }
      }
    }
    if (p.max) {
      y[e] = store<T>(best);
      if (indices) indices[e] = best_i;
    } else {
      y[e] = store<T>(count > 0 ? acc / static_cast<A>(count) : A(0));
    }
  }
}

template <typename T>
__global__ void maxPoolBackwardKernel(const T* gy, const int64_t* indices, T* gx, int64_t NC,
                                      int64_t HW, int64_t OHW) {
  const int64_t total = NC * OHW;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t nc = e / OHW, i = indices[e];
    if (i >= 0) atomicAdd(&gx[nc * HW + i], gy[e]);
  }
}

// Average pooling backward as a gather over the output positions covering each input (no atomics).
template <typename T>
__global__ void avgPoolBackwardKernel(const T* gy, T* gx, int64_t NC, int H, int W, int OH, int OW,
                                      Pool2dParams p) {
  using A = acc_t<T>;
  const int64_t total = NC * H * W;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int iw = static_cast<int>(e % W), ih = static_cast<int>((e / W) % H);
    const int64_t nc = e / (static_cast<int64_t>(W) * H);
    A acc = 0;
    for (int oh = 0; oh < OH; ++oh) {
      const int h0 = oh * p.stride_h - p.pad_h;
      if (ih < h0 || ih >= h0 + p.kernel_h) continue;
      for (int ow = 0; ow < OW; ++ow) {
        const int w0 = ow * p.stride_w - p.pad_w;
        if (iw < w0 || iw >= w0 + p.kernel_w) continue;
        const int hs = max(h0, 0), he = min(h0 + p.kernel_h, H), ws = max(w0, 0),
                  we = min(w0 + p.kernel_w, W);
        const int count = (he - hs) * (we - ws);
        acc += static_cast<A>(load(gy[(nc * OH + oh) * OW + ow])) / static_cast<A>(count);
      }
    }
    gx[e] = store<T>(acc);
  }
}

}  // namespace

void CudaBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                         const Conv2dParams& p) {
  const int dev = y.device().index;
  setDevice(dev);
  ConvPlan& plan = planFor(dev, x, w, y, p);
  cudnnHandle_t h = handleFor(dev);
  const Scalars s(x.dtype());
  Tensor ws = workspace(dev, plan.ws_fwd);
  LATHE_CUDNN_CHECK(cudnnConvolutionForward(h, s.one(), plan.x, x.rawData(), plan.w, w.rawData(),
                                            plan.conv, plan.fwd, ws.rawData(), plan.ws_fwd,
                                            s.zero(), plan.y, y.rawData()));
  if (bias)
    LATHE_CUDNN_CHECK(
        cudnnAddTensor(h, s.one(), plan.bias, bias->rawData(), s.one(), plan.y, y.rawData()));
}

void CudaBackend::conv2dBackward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                 const Tensor* gx, const Tensor* gw, const Tensor* gbias,
                                 const Conv2dParams& p) {
  const int dev = gy.device().index;
  setDevice(dev);
  ConvPlan& plan = planFor(dev, x, w, gy, p);
  cudnnHandle_t h = handleFor(dev);
  const Scalars s(x.dtype());
  if (gx) {
    Tensor ws = workspace(dev, plan.ws_data);
    LATHE_CUDNN_CHECK(cudnnConvolutionBackwardData(
        h, s.one(), plan.w, w.rawData(), plan.y, gy.rawData(), plan.conv, plan.bwd_data,
        ws.rawData(), plan.ws_data, s.zero(), plan.x, gx->rawData()));
  }
  if (gw) {
    Tensor ws = workspace(dev, plan.ws_filter);
    LATHE_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
        h, s.one(), plan.x, x.rawData(), plan.y, gy.rawData(), plan.conv, plan.bwd_filter,
        ws.rawData(), plan.ws_filter, s.zero(), plan.w, gw->rawData()));
  }
  // The bias gradient is a sum over N, H, W: our own reduction, because cuDNN's
  // cudnnConvolutionBackwardBias refuses bf16 (CUDNN_STATUS_NOT_SUPPORTED on cuDNN 9).
  if (gbias) reduce(ReduceOp::sum, gy, {0, 2, 3}, gbias->view({1, gbias->numel(), 1, 1}));
}

void CudaBackend::pool2d(const Tensor& x, const Tensor& y, const Tensor* indices,
                         const Pool2dParams& p) {
  const int dev = y.device().index;
  setDevice(dev);
  const int64_t NC = x.size(0) * x.size(1);
  const int H = static_cast<int>(x.size(2)), W = static_cast<int>(x.size(3));
  const int OH = static_cast<int>(y.size(2)), OW = static_cast<int>(y.size(3));
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "pool2d", [&] {
    poolKernel<scalar_t><<<blocksFor(NC * OH * OW), 256, 0, streamFor(dev)>>>(
        static_cast<const scalar_t*>(x.rawData()), static_cast<scalar_t*>(y.rawData()),
        indices ? static_cast<int64_t*>(indices->rawData()) : nullptr, NC, H, W, OH, OW, p);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::pool2dBackward(const Tensor& gy, const Tensor* indices, const Tensor& gx,
                                 const Pool2dParams& p) {
  const int dev = gx.device().index;
  setDevice(dev);
  const int64_t NC = gx.size(0) * gx.size(1);
  const int H = static_cast<int>(gx.size(2)), W = static_cast<int>(gx.size(3));
  const int OH = static_cast<int>(gy.size(2)), OW = static_cast<int>(gy.size(3));
  if (p.max) {
    LATHE_CHECK(indices != nullptr, "max pooling backward on cuda needs the forward's indices");
    LATHE_CUDA_CHECK(cudaMemsetAsync(gx.rawData(), 0, gx.nbytes(), streamFor(dev)));
    LATHE_CUDA_DISPATCH_FLOAT(gx.dtype(), "pool2dBackward", [&] {
      maxPoolBackwardKernel<scalar_t><<<blocksFor(NC * OH * OW), 256, 0, streamFor(dev)>>>(
          static_cast<const scalar_t*>(gy.rawData()),
          static_cast<const int64_t*>(indices->rawData()), static_cast<scalar_t*>(gx.rawData()), NC,
          static_cast<int64_t>(H) * W, static_cast<int64_t>(OH) * OW);
    });
  } else {
    LATHE_CUDA_DISPATCH_FLOAT(gx.dtype(), "pool2dBackward", [&] {
      avgPoolBackwardKernel<scalar_t><<<blocksFor(NC * H * W), 256, 0, streamFor(dev)>>>(
          static_cast<const scalar_t*>(gy.rawData()), static_cast<scalar_t*>(gx.rawData()), NC, H,
          W, OH, OW, p);
    });
  }
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
