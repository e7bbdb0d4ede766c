#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/CudaAllocator.h"
#include "kernels/cuda/CudaBackend.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {
bool poison_allocations = false;
}  // namespace

void setPoisonAllocations(bool on) {
  poison_allocations = on;
}

size_t CudaAllocator::roundSize(size_t n) {
  if (n == 0) return 0;
  constexpr size_t kSmall = 1 << 20;
  if (n <= kSmall) return (n + 511) / 512 * 512;
  size_t p = kSmall;
  while (p * 2 < n) p *= 2;  // p < n <= 2p: classes p*1.25, 1.5, 1.75, 2
  for (size_t q = 5; q <= 8; ++q)
    if (n <= p * q / 4) return p * q / 4;
  return 2 * p;
}

void* CudaAllocator::systemAllocate(size_t bytes) {
  setDevice(device_);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    // Give the cache back (the caller holds mutex_) and try once more before reporting.
    for (auto& [size, blocks] : free_) {
      for (void* b : blocks) {
        cudaFree(b);
        addReserved(-static_cast<int64_t>(size));
      }
      cached_bytes_ -= size * blocks.size();
      blocks.clear();
    }
    err = cudaMalloc(&p, bytes);
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    const MemoryStats s = stats();
    fail("CUDA out of memory on cuda:", device_, ": could not allocate ",
         formatBytes(static_cast<int64_t>(bytes)), " (Lathe uses ", formatBytes(s.current),
         ", reserves ", formatBytes(s.reserved), "; the device has ",
         formatBytes(static_cast<int64_t>(free_b)), " free of ",
         formatBytes(static_cast<int64_t>(total_b)), ")");
  }
  countSystemAllocation();
  addReserved(static_cast<int64_t>(bytes));
  // LATHE_CUDA_ALLOC_LOG=1: one line per cudaMalloc (finding allocations in steady state).
  static const bool log = [] {
    const char* v = std::getenv("LATHE_CUDA_ALLOC_LOG");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  if (log) {
    std::fprintf(stderr, "[lathe cuda:%d] cudaMalloc #%lld: %zu bytes (in use %lld, cached %zu)\n",
                 device_, static_cast<long long>(stats().system_allocations), bytes,
                 static_cast<long long>(stats().current), cached_bytes_);
  }
  return p;
}

void* CudaAllocator::rawAllocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t cls = roundSize(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = free_.find(cls);
  void* p = nullptr;
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= cls;
  } else {
    p = systemAllocate(cls);
  }
  live_[p] = cls;
  if (poison_allocations) LATHE_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, cls, streamFor(device_)));
  return p;
}

void CudaAllocator::rawDeallocate(void* ptr, size_t) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;
  const size_t cls = it->second;
  live_.erase(it);
  free_[cls].push_back(ptr);
  cached_bytes_ += cls;
}

void CudaAllocator::releaseCached() {
  std::lock_guard<std::mutex> lock(mutex_);
  setDevice(device_);
  cudaStreamSynchronize(streamFor(device_));
  for (auto& [size, blocks] : free_) {
    for (void* b : blocks) {
      cudaFree(b);
      addReserved(-static_cast<int64_t>(size));
    }
    blocks.clear();
  }
  cached_bytes_ = 0;
}

}  // namespace lathe::cuda
