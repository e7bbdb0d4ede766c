// The CUDA caching allocator: blocks are rounded to size classes (512 B steps up to 1 MiB, then
// quarter-powers of two, so at most 25% waste) and kept on per-class free lists after a free,
// so a training loop that repeats its allocations makes no cudaMalloc after the first step.
// All Lathe work on a device runs on one stream, so a freed block is safe to hand out again
// immediately in stream order. Counts used (handed out) and reserved (held from the driver).
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/tensor/Allocator.h"

namespace lathe::cuda {

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}
  Device device() const override { return Device::cuda(device_); }
  void releaseCached() override;
  // The size class a request is served from.
  static size_t roundSize(size_t nbytes);

 protected:
  void* rawAllocate(size_t nbytes) override;
  void rawDeallocate(void* ptr, size_t nbytes) override;

 private:
  void* systemAllocate(size_t bytes);
  int device_;
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  std::unordered_map<void*, size_t> live_;               // block -> size class
  size_t cached_bytes_ = 0;
};

}  // namespace lathe::cuda
