// CUDA backend registration, devices and streams, and copies between host and devices.
#include <cublasLt.h>
#include <cudnn.h>
#include <nccl.h>

#include <mutex>
#include <string>

#include "core/base/BuildInfo.h"
#include "core/ops/Ops.h"
#include "kernels/cuda/CudaBackend.h"
#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

std::vector<cudaStream_t>& streams() {
  static std::vector<cudaStream_t> s;
  return s;
}
std::mutex stream_mutex;

CudaBackend* backend_instance = nullptr;

}  // namespace

void setDevice(int device) {
  thread_local int current = -1;
  if (current != device) {
    LATHE_CUDA_CHECK(cudaSetDevice(device));
    current = device;
  }
}

cudaStream_t streamFor(int device) {
  std::lock_guard<std::mutex> lock(stream_mutex);
  auto& s = streams();
  if (static_cast<int>(s.size()) <= device) s.resize(static_cast<size_t>(device) + 1, nullptr);
  if (s[static_cast<size_t>(device)] == nullptr) {
    setDevice(device);
    LATHE_CUDA_CHECK(
        cudaStreamCreateWithFlags(&s[static_cast<size_t>(device)], cudaStreamNonBlocking));
  }
  return s[static_cast<size_t>(device)];
}

int deviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

int computeCapability(int device_index) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_index) !=
          cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_index) !=
          cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major * 10 + minor;
}

CudaBackend::CudaBackend(int devices) {
  for (int i = 0; i < devices; ++i) allocators_.push_back(std::make_unique<CudaAllocator>(i));
}

Allocator& CudaBackend::allocator(int device_index) {
  LATHE_CHECK(device_index >= 0 && device_index < deviceCount(), "cuda:", device_index,
              " does not exist (", deviceCount(), " GPU(s) present)");
  return *allocators_[static_cast<size_t>(device_index)];
}

std::string CudaBackend::deviceName(int device_index) const {
  cudaDeviceProp prop{};
  LATHE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_index));
  return prop.name;
}

DeviceMemory CudaBackend::deviceMemory(int device_index) const {
  setDevice(device_index);
  size_t free_bytes = 0, total_bytes = 0;
  LATHE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return {static_cast<int64_t>(total_bytes), static_cast<int64_t>(free_bytes)};
}

void CudaBackend::synchronize(int device_index) {
  setDevice(device_index);
  LATHE_CUDA_CHECK(cudaStreamSynchronize(streamFor(device_index)));
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  const bool from_host = src.device().isCpu(), to_host = dst.device().isCpu();
  if (!from_host && !to_host) {
    if (src.device() == dst.device()) {
      copyDevice(src, dst);
      return;
    }
    // Between GPUs: gather contiguously on the source, copy peer to peer, scatter on the target.
    Tensor s = src.contiguous().to(dst.dtype());
    Tensor tmp = dst.isContiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
    synchronize(src.device().index);
    LATHE_CUDA_CHECK(cudaMemcpyPeerAsync(tmp.rawData(), dst.device().index, s.rawData(),
                                         src.device().index, s.nbytes(),
                                         streamFor(dst.device().index)));
    if (!dst.isContiguous()) copyDevice(tmp, dst);
    synchronize(dst.device().index);
    return;
  }
  if (from_host) {
    // Host -> device: convert and pack on the host, one memcpy, then scatter on the device.
    NoGradGuard no_grad;
    Tensor h = src.contiguous();
    if (h.dtype() != dst.dtype()) h = h.to(dst.dtype());
    const int dev = dst.device().index;
    setDevice(dev);
    Tensor tmp = dst.isContiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
    LATHE_CUDA_CHECK(cudaMemcpyAsync(tmp.rawData(), h.rawData(), h.nbytes(), cudaMemcpyHostToDevice,
                                     streamFor(dev)));
    if (!dst.isContiguous()) copyDevice(tmp, dst);
    // The host buffer may be freed when we return: wait for the copy.
    LATHE_CUDA_CHECK(cudaStreamSynchronize(streamFor(dev)));
    return;
  }
  // Device -> host: convert and pack on the device, one memcpy, then scatter on the host.
  NoGradGuard no_grad;
  const int dev = src.device().index;
  setDevice(dev);
  Tensor d = src.isContiguous() && src.dtype() == dst.dtype()
                 ? src
                 : Tensor::empty(src.shape(), dst.dtype(), src.device());
  if (!d.sameStorage(src)) copyDevice(src, d);
  Tensor h = dst.isContiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), Device::cpu());
  LATHE_CUDA_CHECK(cudaMemcpyAsync(h.rawData(), d.rawData(), d.nbytes(), cudaMemcpyDeviceToHost,
                                   streamFor(dev)));
  LATHE_CUDA_CHECK(cudaStreamSynchronize(streamFor(dev)));
  if (!dst.isContiguous()) backendFor(DeviceType::cpu).copy(h, dst);
}

void registerBackend() {
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  addCapability("CUDA", std::to_string(runtime / 1000) + "." +
                            std::to_string((runtime % 1000) / 10) +
                            " (architectures " LATHE_CUDA_ARCHS ")");
  addCapability("cuBLASLt", std::to_string(cublasLtGetVersion()));
  addCapability("cuDNN", std::to_string(cudnnGetVersion()));
  int nccl = 0;
  ncclGetVersion(&nccl);
  addCapability("NCCL", std::to_string(nccl / 10000) + "." + std::to_string((nccl / 100) % 100) +
                            "." + std::to_string(nccl % 100));
  const int n = deviceCount();
  std::string devices = n == 0 ? "none found" : "";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, i);
    devices += (i ? "; " : "") + std::string("cuda:") + std::to_string(i) + " " + prop.name +
               " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
               std::to_string(prop.totalGlobalMem >> 20) + " MiB)";
  }
  addCapability("GPUs", devices);
  if (n > 0 && backend_instance == nullptr) {
    backend_instance = new CudaBackend(n);  // lives for the process: tensors may outlive main
    lathe::registerBackend(backend_instance);
  }
}

}  // namespace lathe::cuda
