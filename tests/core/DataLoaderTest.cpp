// DataLoader, splits, transforms and token windows: seeded shuffles that repeat by seed and
// change by epoch, drop_last, prefetching that yields exactly the synchronous batches, resuming
// from a saved position, shutdown mid-epoch, errors surfacing from the worker thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <thread>

#include "core/base/Error.h"
#include "core/data/DataLoader.h"
#include "core/data/ImageFormats.h"
#include "core/data/TextDataset.h"
#include "core/data/Transforms.h"

namespace lathe::data {
namespace {

// Example i: input f32 [2] = {i, -i}, target i64 = i % 3.
std::shared_ptr<ArrayDataset> counting(int64_t n) {
  std::vector<double> x, y;
  for (int64_t i = 0; i < n; ++i) {
    x.push_back(static_cast<double>(i));
    x.push_back(-static_cast<double>(i));
    y.push_back(static_cast<double>(i % 3));
  }
  return std::make_shared<ArrayDataset>(Tensor::fromVector(x, {n, 2}, DType::f32),
                                        Tensor::fromVector(y, {n}, DType::i64));
}

// The example ids of a batch (from the first input column).
std::vector<int64_t> ids(const Batch& b) {
  std::vector<int64_t> out;
  const std::vector<float> v = b.input.toFloats();
  for (size_t k = 0; k < v.size(); k += 2) out.push_back(static_cast<int64_t>(v[k]));
  return out;
}

std::vector<std::vector<int64_t>> epochIds(DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  while (auto b = loader.next()) out.push_back(ids(*b));
  return out;
}

TEST(DataLoader, SequentialBatchesAndDropLast) {
  LoaderOptions o;
  o.batch_size = 3;
  o.shuffle = false;
  o.prefetch = 0;
  DataLoader loader(counting(10), o);
  EXPECT_EQ(loader.batchesPerEpoch(), 4);
  const auto e0 = epochIds(loader);
  EXPECT_EQ(e0, (std::vector<std::vector<int64_t>>{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9}}));
  EXPECT_EQ(loader.position(), (LoaderPosition{1, 0}));
  o.drop_last = true;
  DataLoader dropping(counting(10), o);
  EXPECT_EQ(dropping.batchesPerEpoch(), 3);
  EXPECT_EQ(epochIds(dropping).back(), (std::vector<int64_t>{6, 7, 8}));
  // Batches stack inputs as f32 [B, 2] and targets as i64 [B].
  DataLoader again(counting(10), o);
  const Batch b = *again.next();
  EXPECT_EQ(b.input.shape(), (Shape{3, 2}));
  EXPECT_EQ(b.target.dtype(), DType::i64);
  EXPECT_EQ(b.target.toInts(), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(b.epoch, 0);
  EXPECT_EQ(b.index, 0);
}

TEST(DataLoader, ShuffleRepeatsBySeedAndChangesByEpoch) {
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 7;
  o.prefetch = 0;
  DataLoader a(counting(50), o), b(counting(50), o);
  const auto a0 = epochIds(a), a1 = epochIds(a);
  EXPECT_EQ(a0, epochIds(b));
  EXPECT_EQ(a1, epochIds(b));
  EXPECT_NE(a0, a1);
  for (const auto& epoch : {a0, a1}) {
    std::multiset<int64_t> seen;
    for (const auto& batch : epoch) seen.insert(batch.begin(), batch.end());
    EXPECT_EQ(seen.size(), 50u);
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 50u);  // each exactly once
  }
  o.seed = 8;
  DataLoader c(counting(50), o);
  EXPECT_NE(epochIds(c), a0);
  // The permutation is fixed by (seed, stream) alone, on every compiler and library.
  EXPECT_EQ(seededPermutation(6, 1, 0), seededPermutation(6, 1, 0));
  EXPECT_EQ(a.batchIndices(0, 0), a0[0]);
}

TEST(DataLoader, PrefetchYieldsTheSameBatches) {
  LoaderOptions sync;
  sync.batch_size = 5;
  sync.seed = 3;
  sync.prefetch = 0;
  LoaderOptions async = sync;
  async.prefetch = 3;
  DataLoader a(counting(23), sync), b(counting(23), async);
  for (int epoch = 0; epoch < 3; ++epoch) {
    while (true) {
      auto x = a.next();
      auto y = b.next();
      ASSERT_EQ(x.has_value(), y.has_value());
      if (!x) break;
      EXPECT_EQ(x->input.toFloats(), y->input.toFloats());
      EXPECT_EQ(x->target.toInts(), y->target.toInts());
      EXPECT_EQ(x->epoch, y->epoch);
      EXPECT_EQ(x->index, y->index);
    }
  }
}

TEST(DataLoader, ResumesExactlyFromASavedPosition) {
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 11;
  o.prefetch = 2;
  DataLoader first(counting(30), o);
  std::vector<std::vector<int64_t>> all;
  LoaderPosition saved;
  int taken = 0;
  for (int epoch = 0; epoch < 2; ++epoch) {
    while (auto b = first.next()) {
      all.push_back(ids(*b));
      if (++taken == 10) saved = first.position();  // mid-epoch 1 (8 batches per epoch)
    }
  }
  EXPECT_EQ(saved, (LoaderPosition{1, 2}));
  DataLoader resumed(counting(30), o);
  resumed.seek(saved);
  std::vector<std::vector<int64_t>> rest;
  while (auto b = resumed.next()) rest.push_back(ids(*b));
  EXPECT_EQ(rest, std::vector<std::vector<int64_t>>(all.begin() + 10, all.end()));
  // Seeking back on a live loader discards its queue.
  first.seek({0, 6});
  EXPECT_EQ(ids(*first.next()), all[6]);
  EXPECT_THROW(first.seek({0, 9}), Error);
  EXPECT_THROW(first.seek({-1, 0}), Error);
}

class SlowDataset : public Dataset {
 public:
  explicit SlowDataset(std::atomic<int>* loads, int64_t fail_at = -1)
      : loads_(loads), fail_at_(fail_at) {}
  int64_t size() const override { return 64; }
  Example get(int64_t i) const override {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ++*loads_;
    LATHE_CHECK(i != fail_at_, "SlowDataset: example ", i, " is broken");
    return {Tensor::full({1}, static_cast<double>(i)), Tensor::full({}, 0.0, DType::i64)};
  }

 private:
  std::atomic<int>* loads_;
  int64_t fail_at_;
};

TEST(DataLoader, StopsItsWorkerWhenDestroyedMidEpoch) {
  std::atomic<int> loads{0};
  LoaderOptions o;
  o.batch_size = 2;
  o.prefetch = 2;
  const auto start = std::chrono::steady_clock::now();
  {
    DataLoader loader(std::make_shared<SlowDataset>(&loads), o);
    ASSERT_TRUE(loader.next().has_value());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The worker stops after at most the batch it is on plus the bounded queue.
  EXPECT_LE(loads.load(), 2 * (1 + 2 + 1));
  EXPECT_LT(seconds, 5.0);
  { DataLoader never_used(std::make_shared<SlowDataset>(&loads), o); }
}

TEST(DataLoader, WorkerErrorsSurfaceInNext) {
  for (int prefetch : {0, 2}) {
    std::atomic<int> loads{0};
    LoaderOptions o;
    o.batch_size = 4;
    o.shuffle = false;
    o.prefetch = prefetch;
    DataLoader loader(std::make_shared<SlowDataset>(&loads, 9), o);
    ASSERT_TRUE(loader.next().has_value());
    ASSERT_TRUE(loader.next().has_value());
    try {
      loader.next();
      FAIL() << "batch 2 holds the broken example";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("example 9 is broken"), std::string::npos);
    }
    EXPECT_EQ(loader.position(), (LoaderPosition{0, 2}));
    loader.seek({0, 3});
    EXPECT_TRUE(loader.next().has_value());
  }
  EXPECT_THROW(DataLoader(counting(4), LoaderOptions{.batch_size = 0}), Error);
}

TEST(DataSplit, DeterministicDisjointAndComplete) {
  auto base = counting(101);
  const Split s = trainValSplit(base, 0.2, 5);
  EXPECT_EQ(s.val->size(), 20);
  EXPECT_EQ(s.train->size(), 81);
  std::set<int64_t> all;
  for (const DatasetPtr& part : {s.train, s.val})
    for (int64_t i = 0; i < part->size(); ++i)
      all.insert(static_cast<int64_t>(part->get(i).input.toFloats()[0]));
  EXPECT_EQ(all.size(), 101u);
  const Split again = trainValSplit(base, 0.2, 5), other = trainValSplit(base, 0.2, 6);
  const auto& ia = dynamic_cast<const SubsetDataset&>(*s.val).indices();
  EXPECT_EQ(ia, dynamic_cast<const SubsetDataset&>(*again.val).indices());
  EXPECT_NE(ia, dynamic_cast<const SubsetDataset&>(*other.val).indices());
  // Subset batches gather the mapped examples.
  const int64_t idx[] = {0, 3};
  const Batch b = s.val->getBatch(idx, 0);
  EXPECT_EQ(ids(b), (std::vector<int64_t>{ia[0], ia[3]}));
  EXPECT_THROW(trainValSplit(base, 1.5, 0), Error);
  EXPECT_THROW(s.val->get(20), Error);
}

// Two images [2, 2, 3]: channel 0 holds 0..5, channel 1 holds 10..15 (+ 100 for image 1).
std::shared_ptr<ArrayDataset> images() {
  std::vector<double> x;
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 2; ++c)
      for (int p = 0; p < 6; ++p) x.push_back(c * 10 + p + n * 100);
  return std::make_shared<ArrayDataset>(Tensor::fromVector(x, {2, 2, 2, 3}),
                                        Tensor::fromVector(std::vector<int64_t>{0, 1}, {2}));
}

TEST(DataTransforms, NormalizePerChannel) {
  auto norm = std::make_shared<NormalizeDataset>(images(), std::vector<float>{1, 10},
                                                 std::vector<float>{2, 0.5});
  const std::vector<float> v = norm->get(0).input.toFloats();
  EXPECT_FLOAT_EQ(v[0], -0.5f);  // (0 - 1) / 2
  EXPECT_FLOAT_EQ(v[5], 2.0f);   // (5 - 1) / 2
  EXPECT_FLOAT_EQ(v[6], 0.0f);   // (10 - 10) / 0.5
  EXPECT_FLOAT_EQ(v[11], 10.0f);
  const int64_t idx[] = {0, 1};
  const Batch b = norm->getBatch(idx, 0);
  const std::vector<float> bv = b.input.toFloats();
  EXPECT_EQ(std::vector<float>(bv.begin(), bv.begin() + 12), v);
  EXPECT_FLOAT_EQ(bv[12], 49.5f);                         // (100 - 1) / 2
  EXPECT_EQ(images()->get(0).input.toFloats()[0], 0.0f);  // the base is untouched
  const ChannelStats st = channelStats(*images());
  EXPECT_FLOAT_EQ(st.mean[0], 52.5f);
  EXPECT_NEAR(st.std[0], std::sqrt(50.0 * 50.0 + 35.0 / 12.0), 1e-3);
  EXPECT_THROW(NormalizeDataset(images(), {1, 2, 3}, {1, 1, 1}).get(0), Error);
  EXPECT_THROW(NormalizeDataset(images(), {1}, {0}), Error);
}

TEST(DataTransforms, CropAndFlipAreSeededPerEpoch) {
  auto aug = std::make_shared<RandomCropFlipDataset>(images(), 1, true, 99);
  // Same (i, epoch): same draw; over epochs the draws vary and cover flips both ways.
  std::set<std::tuple<int, int, bool>> draws;
  for (int64_t e = 0; e < 40; ++e) {
    const auto d = aug->draw(0, e);
    EXPECT_EQ(d.dy, aug->draw(0, e).dy);
    EXPECT_TRUE(d.dy >= 0 && d.dy <= 2 && d.dx >= 0 && d.dx <= 2);
    draws.insert({d.dy, d.dx, d.flip});
  }
  EXPECT_GT(draws.size(), 6u);
  // Check one example against the definition: out(y, x) = padded(y + dy, xs + dx).
  for (int64_t e = 0; e < 8; ++e) {
    const auto d = aug->draw(1, e);
    const std::vector<float> out = aug->sample(1, e).input.toFloats();
    const std::vector<float> src = images()->get(1).input.toFloats();
    for (int c = 0; c < 2; ++c)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 3; ++x) {
          const int xs = d.flip ? 2 - x : x;
          const int sy = y + d.dy - 1, sx = xs + d.dx - 1;
          const float want =
              (sy >= 0 && sy < 2 && sx >= 0 && sx < 3) ? src[c * 6 + sy * 3 + sx] : 0;
          EXPECT_EQ(out[c * 6 + y * 3 + x], want) << "epoch " << e;
        }
    // A batch applies the same draws as per-example sampling.
    const int64_t idx[] = {1};
    EXPECT_EQ(aug->getBatch(idx, e).input.toFloats(), out);
  }
  EXPECT_EQ(aug->get(1).input.toFloats(), images()->get(1).input.toFloats());
  // Through a loader: the same seed and epoch give the same augmented batches.
  LoaderOptions o;
  o.batch_size = 2;
  o.prefetch = 1;
  DataLoader a(aug, o), b(aug, o);
  EXPECT_EQ(a.next()->input.toFloats(), b.next()->input.toFloats());
}

TEST(DataText, ByteWindowsShiftTargetsByOne) {
  TokenWindowDataset ds(byteTokens("hello world!"), 4);
  EXPECT_EQ(ds.size(), 2);  // 12 tokens: windows start at 0 and 4 (each needs 5 tokens)
  const Example e = ds.get(1);
  EXPECT_EQ(e.input.dtype(), DType::i64);
  EXPECT_EQ(e.input.toInts(), (std::vector<int64_t>{'o', ' ', 'w', 'o'}));
  EXPECT_EQ(e.target.toInts(), (std::vector<int64_t>{' ', 'w', 'o', 'r'}));
  TokenWindowDataset overlapping(byteTokens("abcdefg"), 3, 1);
  EXPECT_EQ(overlapping.size(), 4);
  const int64_t idx[] = {3, 0};
  const Batch b = overlapping.getBatch(idx, 0);
  EXPECT_EQ(b.input.shape(), (Shape{2, 3}));
  EXPECT_EQ(b.target.toInts(), (std::vector<int64_t>{'e', 'f', 'g', 'b', 'c', 'd'}));
  EXPECT_THROW(TokenWindowDataset(byteTokens("abc"), 3), Error);
  const std::string p = testing::TempDir() + "lathe_text.txt";
  writeFile(p, Bytes{'a', 'b', 'c', 'd', 'e'});
  EXPECT_EQ(loadByteTextDataset(p, 2)->size(), 2);
}

TEST(DataText, Gpt2Windows) {
  const std::string dir = std::string(LATHE_SHARED_DIR) + "/data/gpt2";
  if (!std::filesystem::exists(dir + "/vocab.json")) GTEST_SKIP() << "no GPT-2 files in " << dir;
  const Gpt2Tokenizer tok = Gpt2Tokenizer::load(dir);
  const std::string p = testing::TempDir() + "lathe_gpt2.txt";
  const std::string text = "Hello world<|endoftext|>The quick brown fox jumps over the lazy dog.";
  writeFile(p, Bytes(text.begin(), text.end()));
  auto ds = loadGpt2TextDataset(p, tok, 4);
  // 2 + 1 + 10 = 13 tokens -> windows at 0, 4, 8.
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->get(0).input.toInts(), (std::vector<int64_t>{15496, 995, 50256, 464}));
  EXPECT_EQ(ds->get(0).target.toInts(), (std::vector<int64_t>{995, 50256, 464, 2068}));
}

TEST(DataLoader, FashionMnistEpochAtBatch64) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST is not installed in " << dir;
  auto train = loadMnistDir(dir, true);
  LoaderOptions o;
  o.batch_size = 64;
  o.seed = 1;
  o.prefetch = 4;
  DataLoader loader(train, o);
  std::vector<int64_t> label_counts(10, 0);
  int64_t batches = 0, examples = 0;
  Batch first;
  const auto start = std::chrono::steady_clock::now();
  while (auto b = loader.next()) {
    if (batches++ == 0) first = *b;
    examples += b->size();
    const int64_t* y = b->target.data<int64_t>();
    for (int64_t k = 0; k < b->size(); ++k) ++label_counts[static_cast<size_t>(y[k])];
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(batches, 938);  // 937 full batches and one of 32
  EXPECT_EQ(examples, 60000);
  for (int64_t c : label_counts) EXPECT_EQ(c, 6000);  // every example once: 6000 per class
  // The first batch is the first 64 of the epoch's permutation.
  const std::vector<int64_t> order = loader.epochOrder(0);
  const Batch direct = train->getBatch(std::span<const int64_t>(order.data(), 64), 0);
  EXPECT_EQ(first.input.toFloats(), direct.input.toFloats());
  EXPECT_EQ(first.target.toInts(), direct.target.toInts());
  std::cout << "[ INFO     ] Fashion-MNIST, batch 64, shuffled, prefetch 4: " << batches / s
            << " batches/s\n";
}

}  // namespace
}  // namespace lathe::data
