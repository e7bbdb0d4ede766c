// Per-device allocators with exact byte accounting. Every tensor byte comes from an Allocator,
// which counts current and peak bytes overall and per tag; those counters are the memory figures
// the workbench shows. Caching allocators (CUDA) also report reserved bytes (held from the
// driver, in use or cached). Counters are thread-safe; peaks can be reset between phases.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "core/tensor/DType.h"

namespace lathe {

enum class MemoryTag : uint8_t {
  parameters,
  gradients,
  optimizer_state,
  activations,
  workspace,
  other
};
inline constexpr int kNumMemoryTags = 6;
const char* memoryTagName(MemoryTag t);

struct MemoryStats {
  int64_t current = 0;  // bytes handed out and not yet freed
  int64_t peak = 0;     // highest `current` since the last reset
  std::array<int64_t, kNumMemoryTags> tag_current{};
  std::array<int64_t, kNumMemoryTags> tag_peak{};
  int64_t reserved = 0;  // bytes held from the system (>= current for caching allocators)
  int64_t reserved_peak = 0;
  int64_t allocations = 0;         // allocate() calls served
  int64_t system_allocations = 0;  // calls that reached the system (malloc/cudaMalloc)
};

// The tag new allocations get on this thread; MemoryTagScope changes it for a scope.
MemoryTag currentMemoryTag();
class MemoryTagScope {
 public:
  explicit MemoryTagScope(MemoryTag tag);
  ~MemoryTagScope();
  MemoryTagScope(const MemoryTagScope&) = delete;
  MemoryTagScope& operator=(const MemoryTagScope&) = delete;

 private:
  MemoryTag previous_;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;

  // Returns nbytes (may be 0) of memory aligned to 64 bytes, counted under `tag`. Throws
  // lathe::Error naming the request and the current usage when memory runs out.
  void* allocate(size_t nbytes, MemoryTag tag);
  void deallocate(void* ptr, size_t nbytes, MemoryTag tag);
  // Moves nbytes from one tag's count to another (a tensor that becomes a parameter).
  void retag(size_t nbytes, MemoryTag from, MemoryTag to);

  MemoryStats stats() const;
  void resetPeaks();
  // Gives cached memory back to the system (no-op for non-caching allocators).
  virtual void releaseCached() {}

 protected:
  // Backends implement these; `reserved_delta` is added to the reserved count.
  virtual void* rawAllocate(size_t nbytes) = 0;
  virtual void rawDeallocate(void* ptr, size_t nbytes) = 0;
  void addReserved(int64_t delta);
  void countSystemAllocation();

 private:
  mutable std::mutex mutex_;
  MemoryStats stats_;
};

// Plain 64-byte aligned host memory; reserved == current.
class CpuAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu(); }

 protected:
  void* rawAllocate(size_t nbytes) override;
  void rawDeallocate(void* ptr, size_t nbytes) override;
};

// The process-wide host allocator.
CpuAllocator& cpuAllocator();

// "1.5 MiB"-style formatting for messages.
std::string formatBytes(int64_t bytes);

}  // namespace lathe
