// DataLoader: batches of a Dataset in a seeded order, epoch after epoch, optionally prepared by a
// background thread that keeps a bounded queue filled. Its position (epoch, next batch index) is
// all the state a checkpoint needs: a new loader seeked to a saved position yields exactly the
// batches the old one would have. Destroying a loader mid-epoch stops and joins its thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/data/Dataset.h"

namespace lathe::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;     // a fresh seeded permutation every epoch
  uint64_t seed = 0;       // the order of epoch e depends only on (seed, e)
  bool drop_last = false;  // drop a final batch smaller than batch_size
  int prefetch = 2;        // batches a worker thread prepares ahead; 0 = load in next()
};

// Where a loader stands: the next batch it returns is batch `batch` of epoch `epoch`.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const LoaderPosition&) const = default;
};

class DataLoader {
 public:
  DataLoader(DatasetPtr dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch of the current epoch, or nullopt when the epoch is over (the position then
  // moves to the start of the next epoch, so `while (auto b = loader.next())` runs one epoch).
  // An error raised while loading (a bad file, a bad example) is rethrown here.
  std::optional<Batch> next();
  LoaderPosition position() const { return pos_; }
  // Continues from `p` (e.g. a checkpoint's position); queued batches are discarded.
  void seek(LoaderPosition p);
  int64_t batchesPerEpoch() const;
  // The example order of `epoch` (a permutation of [0, N) when shuffling, else 0..N-1).
  std::vector<int64_t> epochOrder(int64_t epoch) const;
  // The example indices of batch `batch` in epoch `epoch` (the order a resumed run replays).
  std::vector<int64_t> batchIndices(int64_t epoch, int64_t batch) const;
  const LoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

 private:
  struct Item {
    LoaderPosition pos;
    Batch batch;
    std::exception_ptr error;
  };
  Batch load(LoaderPosition p) const;
  const std::vector<int64_t>& order(int64_t epoch) const;  // cached per epoch (worker only)
  void startWorker();
  void stopWorker();
  void workerLoop(LoaderPosition start);

  DatasetPtr dataset_;
  LoaderOptions options_;
  LoaderPosition pos_;
  // The permutation of one epoch; used by whichever thread loads (never both at once).
  mutable int64_t order_epoch_ = -1;
  mutable std::vector<int64_t> order_;

  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Item> queue_;
  bool stop_ = false;
};

}  // namespace lathe::data
