// NumPy .npy arrays and .npz archives. Header versions 1.0/2.0/3.0, little or big endian,
// dtypes u1 i1 i2 u2 i4 u4 i8 f2 f4 f8 b1 in C order. Object arrays (pickles) and Fortran order
// are refused with a message saying so; the data must fill the file exactly.
// Element types map to: u1 u8, i1 i8, i2/u2/i4 i32, u4/i8 i64, f2 f16, f4 f32, f8 f64, b1 bool.
#pragma once

#include <map>
#include <string>

#include "core/data/Bytes.h"
#include "core/data/Dataset.h"

namespace lathe::data {

Tensor parseNpy(ByteSpan bytes, const std::string& name);
Tensor loadNpy(const std::string& path);
// The arrays of an .npz archive by member name without ".npy" ("x.npy" -> "x").
std::map<std::string, Tensor> parseNpz(ByteSpan bytes, const std::string& name,
                                       size_t max_member_bytes = kMaxInflatedBytes);
std::map<std::string, Tensor> loadNpz(const std::string& path);

// .npy (version 1.0, little endian, C order) bytes of a tensor of dtype u8 i8 i32 i64 f16 f32
// f64 or bool; an .npz of named tensors (members "<key>.npy"), deflated when `compress`.
Bytes encodeNpy(const Tensor& t);
Bytes encodeNpz(const std::map<std::string, Tensor>& arrays, bool compress);
void saveNpy(const std::string& path, const Tensor& t);
void saveNpz(const std::string& path, const std::map<std::string, Tensor>& arrays, bool compress);

// A dataset of inputs [N, ...] and targets [N, ...] (inputs become f32 times `input_scale`,
// integer targets i64, floating targets f32).
std::shared_ptr<ArrayDataset> loadNpyDataset(const std::string& inputs_path,
                                             const std::string& targets_path,
                                             double input_scale = 1.0);
std::shared_ptr<ArrayDataset> loadNpzDataset(const std::string& path,
                                             const std::string& input_key = "x",
                                             const std::string& target_key = "y",
                                             double input_scale = 1.0);

}  // namespace lathe::data
