// Shared oneDNN plumbing for the fast CPU kernels (onednn/*.cpp): the process-wide engine and
// stream, memory objects over Lathe tensors, and a cache of primitives keyed by shapes and flags
// (descriptor creation costs 2-10 us a call even when oneDNN's own cache holds the primitive,
// as much as a whole small matmul; a hit here is a hash lookup).
// oneDNN runs on the OpenMP runtime, so its threads follow omp_set_num_threads.
#pragma once

#include <omp.h>

#include <cstdint>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/tensor/Tensor.h"

namespace lathe::cpu::onednn {

inline dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

inline dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

// The oneDNN type of a dtype the fast path handles (f32, bf16); nullopt for the others.
inline std::optional<dnnl::memory::data_type> dnnlType(DType t) {
  if (t == DType::f32) return dnnl::memory::data_type::f32;
  if (t == DType::bf16) return dnnl::memory::data_type::bf16;
  return std::nullopt;
}

// A memory object over a tensor's data (oneDNN does not write inputs; the cast is for its API).
inline dnnl::memory memoryOf(const dnnl::memory::desc& md, const Tensor& t) {
  return dnnl::memory(md, engine(), t.rawData());
}

// A memory object of layout `md` backed by a Lathe tensor `holder` (so scratch copies show up in
// Lathe's memory accounting). `holder` must outlive the memory's use.
inline dnnl::memory scratchMemory(const dnnl::memory::desc& md, Tensor& holder) {
  holder = Tensor::empty({static_cast<int64_t>(md.get_size())}, DType::u8);
  return dnnl::memory(md, engine(), holder.rawData());
}

using CacheKey = std::vector<int64_t>;

struct CacheKeyHash {
  size_t operator()(const CacheKey& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : k) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

// Thread-safe map from a key to a built value (primitives are reference-counted handles, so
// values are returned by copy). An empty optional remembers that oneDNN has no implementation.
// The thread count joins the key: oneDNN partitions work for the count it was built with.
// Cleared when full: training reuses a handful of shapes, so eviction order does not matter.
template <typename V>
class PrimitiveCache {
 public:
  template <typename Make>
  std::optional<V> get(CacheKey key, Make&& make) {
    key.push_back(omp_get_max_threads());
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    std::optional<V> built = make();  // outside the lock: building may take milliseconds
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kCapacity) map_.clear();
    map_.emplace(key, built);
    return built;
  }

 private:
  static constexpr size_t kCapacity = 512;
  std::mutex mu_;
  std::unordered_map<CacheKey, std::optional<V>, CacheKeyHash> map_;
};

}  // namespace lathe::cpu::onednn
