// Image dataset files: MNIST / Fashion-MNIST IDX (plain or gzipped) and CIFAR-10 binary
// batches. Parsers work on memory buffers (what the fuzz targets drive) and check every size
// against the header before touching data; loaders wrap the result as an ArrayDataset whose
// inputs are f32 [C, H, W] in [0, 1] (pixels stay u8 in memory) and targets i64 class ids.
#pragma once

#include <string>
#include <vector>

#include "core/data/Bytes.h"
#include "core/data/Dataset.h"

namespace lathe::data {

// An IDX array (big-endian; magic 00 00 <type> <ndims>) as a tensor of its element type:
// u8, i8, i16 (widened to i32), i32, f32 or f64. The data must fill the file exactly.
Tensor parseIdx(ByteSpan bytes, const std::string& name);
Tensor loadIdx(const std::string& path);  // gunzips when the file is gzipped
// The IDX bytes of a contiguous u8, i8, i32, f32 or f64 tensor (at least one dim).
Bytes encodeIdx(const Tensor& t);

// Images (IDX u8 [N, H, W]) and labels (IDX u8 [N]) as one dataset: input f32 [1, H, W] / 255.
std::shared_ptr<ArrayDataset> makeIdxDataset(const Tensor& images, const Tensor& labels,
                                             const std::string& name);
std::shared_ptr<ArrayDataset> loadIdxDataset(const std::string& images_path,
                                             const std::string& labels_path);
// <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (MNIST and Fashion-MNIST names).
std::shared_ptr<ArrayDataset> loadMnistDir(const std::string& dir, bool train);

// CIFAR-10 records: 1 label byte (0..9) + 3072 pixel bytes (R, G, B planes of 32 x 32).
inline constexpr size_t kCifarRecordBytes = 3073;
struct CifarArrays {
  Tensor images;  // u8 [N, 3, 32, 32]
  Tensor labels;  // u8 [N]
};
CifarArrays parseCifar10(ByteSpan bytes, const std::string& name);
// Concatenates the given batch files; input f32 [3, 32, 32] / 255, target i64.
std::shared_ptr<ArrayDataset> loadCifar10Files(const std::vector<std::string>& paths);
// <dir>/data_batch_{1..5}.bin (train) or <dir>/test_batch.bin.
std::shared_ptr<ArrayDataset> loadCifar10Dir(const std::string& dir, bool train);
// The class names in <dir>/batches.meta.txt (one a line, blank lines skipped).
std::vector<std::string> loadCifar10ClassNames(const std::string& dir);

}  // namespace lathe::data
