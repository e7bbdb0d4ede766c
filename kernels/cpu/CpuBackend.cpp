#include "kernels/cpu/CpuBackend.h"

#include <omp.h>

#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "core/base/BuildInfo.h"

namespace lathe::cpu {
namespace {

const char* isaName(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

}  // namespace

ReferenceBackend& referenceBackend() {
  static ReferenceBackend* b = new ReferenceBackend();
  return *b;
}

CpuBackend& fastBackend() {
  static CpuBackend* b = new CpuBackend();
  return *b;
}

int numThreads() {
  return omp_get_max_threads();
}

void setNumThreads(int n) {
  LATHE_CHECK(n >= 1 && n <= 4096, "thread count must be in [1, 4096], got ", n);
  omp_set_num_threads(n);
}

void registerBackend() {
  static bool done = false;
  if (done) return;
  done = true;
  if (const char* env = std::getenv("LATHE_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    LATHE_CHECK(end != env && *end == '\0' && n >= 1 && n <= 4096, "LATHE_NUM_THREADS=\"", env,
                "\": expected an integer in [1, 4096]");
    setNumThreads(static_cast<int>(n));
  }
  lathe::registerBackend(&fastBackend());
  const dnnl_version_t* v = dnnl_version();
  addCapability("oneDNN", std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                              std::to_string(v->patch) + " (cpu isa " +
                              isaName(dnnl::get_effective_cpu_isa()) + ")");
  addCapability("CPU threads",
                std::to_string(numThreads()) + " (OpenMP; LATHE_NUM_THREADS overrides)");
}

}  // namespace lathe::cpu
