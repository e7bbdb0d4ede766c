// The CUDA backend's entry points, callable from plain C++ (no CUDA headers here).
#pragma once

namespace lathe::cuda {

// Registers the CUDA backend when a GPU is present and records the CUDA capabilities
// (toolkit, architectures, devices, cuBLASLt, cuDNN, NCCL) either way.
void registerBackend();
// Number of visible CUDA devices (0 when none or no driver).
int deviceCount();
// The device's compute capability as major * 10 + minor (90 for an H100); 0 when unknown.
int computeCapability(int device_index);
// Tests: fill every new allocation with 0xFF bytes (NaN for floats), so a kernel that leaves
// part of its output unwritten is caught.
void setPoisonAllocations(bool on);

}  // namespace lathe::cuda
