// Language-modelling windows over a token stream: example i is tokens[i * stride, + block_size
// + 1), split into input = the first block_size tokens and target = the last block_size (the
// next token at every position). Both are i64 [block_size]. Tokens come from a text file read
// as bytes (vocabulary 256) or encoded with GPT-2 BPE.
#pragma once

#include <string>
#include <vector>

#include "core/data/Dataset.h"
#include "core/data/Gpt2Tokenizer.h"

namespace lathe::data {

class TokenWindowDataset : public Dataset {
 public:
  // stride <= 0 means block_size (non-overlapping windows).
  TokenWindowDataset(std::vector<int32_t> tokens, int64_t block_size, int64_t stride = 0,
                     std::string name = {});
  int64_t size() const override { return windows_; }
  Example get(int64_t i) const override;
  Batch getBatch(std::span<const int64_t> indices, int64_t epoch) const override;
  int64_t blockSize() const { return block_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  std::vector<int32_t> tokens_;
  int64_t block_, stride_, windows_;
  std::string name_;
};

// The bytes of `text` as token ids 0..255.
std::vector<int32_t> byteTokens(std::string_view text);
std::shared_ptr<TokenWindowDataset> loadByteTextDataset(const std::string& path, int64_t block_size,
                                                        int64_t stride = 0);
std::shared_ptr<TokenWindowDataset> loadGpt2TextDataset(const std::string& path,
                                                        const Gpt2Tokenizer& tokenizer,
                                                        int64_t block_size, int64_t stride = 0);

}  // namespace lathe::data
