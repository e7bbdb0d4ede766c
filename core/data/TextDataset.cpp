// Token windows for language modelling, from raw bytes or GPT-2 BPE.
#include "core/data/TextDataset.h"

#include "core/data/Bytes.h"

namespace lathe::data {

TokenWindowDataset::TokenWindowDataset(std::vector<int32_t> tokens, int64_t block_size,
                                       int64_t stride, std::string name)
    : tokens_(std::move(tokens)),
      block_(block_size),
      stride_(stride <= 0 ? block_size : stride),
      name_(std::move(name)) {
  LATHE_CHECK(block_ > 0, "TokenWindowDataset ", name_, ": block_size ", block_,
              " must be positive");
  const auto n = static_cast<int64_t>(tokens_.size());
  LATHE_CHECK(n >= block_ + 1, "TokenWindowDataset ", name_, ": ", n,
              " tokens are fewer than block_size + 1 = ", block_ + 1);
  windows_ = (n - (block_ + 1)) / stride_ + 1;
}

Example TokenWindowDataset::get(int64_t i) const {
  const int64_t idx[1] = {i};
  Batch b = getBatch(idx, 0);
  return {b.input.select(0, 0), b.target.select(0, 0)};
}

Batch TokenWindowDataset::getBatch(std::span<const int64_t> indices, int64_t epoch) const {
  const auto B = static_cast<int64_t>(indices.size());
  Batch b;
  b.input = Tensor::empty({B, block_}, DType::i64);
  b.target = Tensor::empty({B, block_}, DType::i64);
  int64_t* in = b.input.data<int64_t>();
  int64_t* tg = b.target.data<int64_t>();
  for (int64_t r = 0; r < B; ++r) {
    const int64_t i = indices[static_cast<size_t>(r)];
    checkIndex(i);
    const int32_t* src = tokens_.data() + i * stride_;
    for (int64_t t = 0; t < block_; ++t) {
      in[r * block_ + t] = src[t];
      tg[r * block_ + t] = src[t + 1];
    }
  }
  b.epoch = epoch;
  return b;
}

std::vector<int32_t> byteTokens(std::string_view text) {
  std::vector<int32_t> t(text.size());
  for (size_t i = 0; i < text.size(); ++i) t[i] = static_cast<unsigned char>(text[i]);
  return t;
}

std::shared_ptr<TokenWindowDataset> loadByteTextDataset(const std::string& path, int64_t block_size,
                                                        int64_t stride) {
  const Bytes b = readFile(path);
  return std::make_shared<TokenWindowDataset>(
      byteTokens(std::string_view(reinterpret_cast<const char*>(b.data()), b.size())), block_size,
      stride, path);
}

std::shared_ptr<TokenWindowDataset> loadGpt2TextDataset(const std::string& path,
                                                        const Gpt2Tokenizer& tokenizer,
                                                        int64_t block_size, int64_t stride) {
  const Bytes b = readFile(path);
  const std::string_view text(reinterpret_cast<const char*>(b.data()), b.size());
  return std::make_shared<TokenWindowDataset>(tokenizer.encode(text, /*allow_special=*/true),
                                              block_size, stride, path);
}

}  // namespace lathe::data
