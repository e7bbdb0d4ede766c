// DataLoader: seeded epoch orders, batch assembly and the bounded prefetch queue. The worker
// walks positions (e, 0), (e, 1), ... across epoch boundaries; next() checks every item against
// the position it expects, so the queue can never hand out a batch out of order.
#include "core/data/DataLoader.h"

namespace lathe::data {

DataLoader::DataLoader(DatasetPtr dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  LATHE_CHECK(dataset_ != nullptr, "DataLoader: no dataset");
  LATHE_CHECK(options_.batch_size > 0, "DataLoader: batch_size ", options_.batch_size,
              " must be positive");
  LATHE_CHECK(options_.prefetch >= 0 && options_.prefetch <= 1024, "DataLoader: prefetch ",
              options_.prefetch, " is outside [0, 1024]");
}

DataLoader::~DataLoader() {
  stopWorker();
}

int64_t DataLoader::batchesPerEpoch() const {
  const int64_t n = dataset_->size(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

const std::vector<int64_t>& DataLoader::order(int64_t epoch) const {
  if (order_epoch_ != epoch) {
    if (options_.shuffle) {
      order_ = seededPermutation(dataset_->size(), options_.seed, static_cast<uint64_t>(epoch));
    } else if (static_cast<int64_t>(order_.size()) != dataset_->size() || order_epoch_ < 0) {
      order_.resize(static_cast<size_t>(dataset_->size()));
      for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
    }
    order_epoch_ = epoch;
  }
  return order_;
}

std::vector<int64_t> DataLoader::epochOrder(int64_t epoch) const {
  if (options_.shuffle)
    return seededPermutation(dataset_->size(), options_.seed, static_cast<uint64_t>(epoch));
  std::vector<int64_t> o(static_cast<size_t>(dataset_->size()));
  for (size_t i = 0; i < o.size(); ++i) o[i] = static_cast<int64_t>(i);
  return o;
}

std::vector<int64_t> DataLoader::batchIndices(int64_t epoch, int64_t batch) const {
  LATHE_CHECK(epoch >= 0 && batch >= 0 && batch < batchesPerEpoch(), "DataLoader: batch ", batch,
              " of epoch ", epoch, " does not exist (", batchesPerEpoch(), " batches per epoch)");
  const std::vector<int64_t> o = epochOrder(epoch);
  const int64_t begin = batch * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, dataset_->size());
  return {o.begin() + begin, o.begin() + end};
}

Batch DataLoader::load(LoaderPosition p) const {
  const std::vector<int64_t>& o = order(p.epoch);
  const int64_t begin = p.batch * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, dataset_->size());
  Batch b = dataset_->getBatch(
      std::span<const int64_t>(o.data() + begin, static_cast<size_t>(end - begin)), p.epoch);
  b.epoch = p.epoch;
  b.index = p.batch;
  return b;
}

std::optional<Batch> DataLoader::next() {
  const int64_t per_epoch = batchesPerEpoch();
  if (pos_.batch >= per_epoch) {
    pos_ = {pos_.epoch + 1, 0};
    return std::nullopt;
  }
  if (options_.prefetch == 0) {
    Batch b = load(pos_);
    ++pos_.batch;
    return b;
  }
  if (!worker_.joinable()) startWorker();
  Item item;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
  }
  not_full_.notify_one();
  if (item.error) {
    stopWorker();  // the worker ended after the error; the next call starts a fresh one
    std::rethrow_exception(item.error);
  }
  LATHE_CHECK(item.pos == pos_, "DataLoader: internal order error (got batch ", item.pos.batch,
              " of epoch ", item.pos.epoch, ", expected ", pos_.batch, " of ", pos_.epoch, ")");
  ++pos_.batch;
  return std::move(item.batch);
}

void DataLoader::seek(LoaderPosition p) {
  LATHE_CHECK(p.epoch >= 0 && p.batch >= 0 && p.batch <= batchesPerEpoch(),
              "DataLoader: cannot seek to batch ", p.batch, " of epoch ", p.epoch, " (",
              batchesPerEpoch(), " batches per epoch)");
  stopWorker();
  pos_ = p;
}

void DataLoader::startWorker() {
  stop_ = false;
  queue_.clear();
  worker_ = std::thread([this, start = pos_] { workerLoop(start); });
}

void DataLoader::stopWorker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  not_full_.notify_all();
  worker_.join();
  queue_.clear();
  stop_ = false;
}

void DataLoader::workerLoop(LoaderPosition p) {
  const int64_t per_epoch = batchesPerEpoch();
  if (per_epoch == 0) return;  // next() never waits when epochs are empty
  while (true) {
    if (p.batch >= per_epoch) p = {p.epoch + 1, 0};
    Item item;
    item.pos = p;
    try {
      item.batch = load(p);
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool failed = item.error != nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      not_full_.wait(lock,
                     [&] { return stop_ || static_cast<int>(queue_.size()) < options_.prefetch; });
      if (stop_) return;
      queue_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    if (failed) return;
    ++p.batch;
  }
}

}  // namespace lathe::data
