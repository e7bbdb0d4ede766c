#include "kernels/Backends.h"

#include "kernels/cpu/CpuBackend.h"
#if LATHE_HAVE_CUDA
#include "kernels/cuda/CudaBackend.h"
#endif

namespace lathe {

void registerBackends() {
  cpu::registerBackend();
#if LATHE_HAVE_CUDA
  cuda::registerBackend();
#endif
}

bool builtWithCuda() {
  return LATHE_HAVE_CUDA != 0;
}

}  // namespace lathe
