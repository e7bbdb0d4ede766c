#include "core/tensor/Allocator.h"

#include <cstdio>
#include <cstdlib>
#include <new>

#include "core/base/Error.h"

namespace lathe {
namespace {
thread_local MemoryTag tls_tag = MemoryTag::activations;
constexpr const char* kTagNames[kNumMemoryTags] = {"parameters",  "gradients", "optimizer_state",
                                                   "activations", "workspace", "other"};
}  // namespace

const char* memoryTagName(MemoryTag t) {
  return kTagNames[static_cast<int>(t)];
}

MemoryTag currentMemoryTag() {
  return tls_tag;
}
MemoryTagScope::MemoryTagScope(MemoryTag tag) : previous_(tls_tag) {
  tls_tag = tag;
}
MemoryTagScope::~MemoryTagScope() {
  tls_tag = previous_;
}

void* Allocator::allocate(size_t nbytes, MemoryTag tag) {
  void* p = rawAllocate(nbytes);  // throws on failure, leaving the counters untouched
  std::lock_guard<std::mutex> lock(mutex_);
  const int t = static_cast<int>(tag);
  stats_.current += static_cast<int64_t>(nbytes);
  stats_.tag_current[t] += static_cast<int64_t>(nbytes);
  if (stats_.current > stats_.peak) stats_.peak = stats_.current;
  if (stats_.tag_current[t] > stats_.tag_peak[t]) stats_.tag_peak[t] = stats_.tag_current[t];
  ++stats_.allocations;
  return p;
}

void Allocator::deallocate(void* ptr, size_t nbytes, MemoryTag tag) {
  rawDeallocate(ptr, nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.current -= static_cast<int64_t>(nbytes);
  stats_.tag_current[static_cast<int>(tag)] -= static_cast<int64_t>(nbytes);
}

void Allocator::retag(size_t nbytes, MemoryTag from, MemoryTag to) {
  if (from == to) return;
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.tag_current[static_cast<int>(from)] -= static_cast<int64_t>(nbytes);
  const int t = static_cast<int>(to);
  stats_.tag_current[t] += static_cast<int64_t>(nbytes);
  if (stats_.tag_current[t] > stats_.tag_peak[t]) stats_.tag_peak[t] = stats_.tag_current[t];
}

MemoryStats Allocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void Allocator::resetPeaks() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak = stats_.current;
  stats_.tag_peak = stats_.tag_current;
  stats_.reserved_peak = stats_.reserved;
}

void Allocator::addReserved(int64_t delta) {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.reserved += delta;
  if (stats_.reserved > stats_.reserved_peak) stats_.reserved_peak = stats_.reserved;
}

void Allocator::countSystemAllocation() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.system_allocations;
}

void* CpuAllocator::rawAllocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) {
    MemoryStats s = stats();
    fail("out of host memory: could not allocate ", formatBytes(static_cast<int64_t>(nbytes)),
         " (Lathe holds ", formatBytes(s.current), ", peak ", formatBytes(s.peak), ")");
  }
  countSystemAllocation();
  addReserved(static_cast<int64_t>(nbytes));
  return p;
}

void CpuAllocator::rawDeallocate(void* ptr, size_t nbytes) {
  std::free(ptr);
  if (ptr != nullptr) addReserved(-static_cast<int64_t>(nbytes));
}

CpuAllocator& cpuAllocator() {
  static CpuAllocator* a = new CpuAllocator();  // never destroyed: tensors may outlive statics
  return *a;
}

std::string formatBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while ((v >= 1024.0 || v <= -1024.0) && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[48];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace lathe
