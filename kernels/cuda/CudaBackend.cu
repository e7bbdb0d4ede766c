// CUDA backend registration and device discovery. The kernels themselves arrive with the CUDA
// backend issue; until then a present GPU is reported but ops on it report missing kernels.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <string>

#include "core/base/BuildInfo.h"
#include "kernels/cuda/CudaBackend.h"

namespace lathe::cuda {

int deviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
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
}

}  // namespace lathe::cuda
